"""WVLP demo Space: text -> image search, zero-shot classification, image-text matching, label -> LLM descriptions.

Runs on a Hugging Face Space (model and dataset from the Hub) and locally:

    WVLP_MODEL=out/run/model python spaces_demo/app.py        # a local model folder or a Hub repo id

Environment: `WVLP_MODEL` (model folder or repo id; else `wvlp_space.json` written by `wvlp publish`),
`WVLP_GALLERY` (a folder of images to search; else Fashion-MNIST test images when the project is installed, else the
`images` config of the release's dataset), `WVLP_GALLERY_SIZE` (default 500), `WVLP_CACHE` (gallery embedding cache),
`WVLP_LLM` (JSON spec of the description backend, default `{"type": "local"}`: SmolLM2 run in-process),
`WVLP_CONCURRENCY` (default 4: how many search / classification / match requests the model serves at once; inference
under `torch.inference_mode` only reads the weights, so requests share one model; descriptions stay one at a time).

A corrupt, truncated or foreign gallery embedding cache file is logged and rebuilt (it is read with
`weights_only=True`, so it can hold nothing but tensors). Uploads reach the app as files and are validated here, by
their header before any decoding, so a bad one gets a message naming what is wrong with it.

Every UI function is a plain method of `WVLPDemo`, usable and tested without the UI.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

logger = logging.getLogger("wvlp_space")

HERE = Path(__file__).resolve().parent
SPACE_CONFIG_FILE = HERE / "wvlp_space.json"
FALLBACK_MODEL = "wvlp/wvlp"  # only when neither WVLP_MODEL nor wvlp_space.json says otherwise
FALLBACK_LLM = "HuggingFaceTB/SmolLM2-135M-Instruct"  # used through transformers when dataset_builder is absent
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
MAX_UPLOAD_BYTES = 10 * 2**20
MAX_PIXELS = 40_000_000
# What PIL may parse an upload as: the formats the suffixes above name (multi-picture JPEGs open through "JPEG").
SUPPORTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
DEFAULT_CONCURRENCY = 4
MAX_TEXT_CHARS = 300
MAX_CLASSES = 50
DEFAULT_CLASSES = "T-shirt/top, trouser, pullover, dress, coat, sandal, shirt, sneaker, bag, ankle boot"
TEMPLATES = ("a photo of a {}.", "a product photo of a {}.", "a {} on a white background.")
DISPLAY_SIZE = 112  # gallery thumbnails: 28 px Fashion-MNIST items are unreadable at their own size
CSS = ".wvlp-note {font-size: 0.9em; opacity: 0.8}"


class InputError(ValueError):
    """Bad user input; the UI shows the message as a `gr.Error`."""


def space_config() -> dict[str, str]:
    """`wvlp_space.json` next to the app (written by `wvlp publish`), else {}."""
    if SPACE_CONFIG_FILE.is_file():
        return json.loads(SPACE_CONFIG_FILE.read_text())
    return {}


def default_model_id() -> str:
    """`$WVLP_MODEL`, else the release's model repo, else a placeholder."""
    return os.environ.get("WVLP_MODEL") or space_config().get("model") or FALLBACK_MODEL


def cache_dir() -> Path:
    """Where gallery embeddings are cached: `$WVLP_CACHE/space`, else `~/.cache/wvlp/space`."""
    return Path(os.environ.get("WVLP_CACHE") or Path.home() / ".cache" / "wvlp").expanduser() / "space"


def concurrency_limit() -> int:
    """`$WVLP_CONCURRENCY` (default 4): how many model requests the Space serves at once."""
    raw = os.environ.get("WVLP_CONCURRENCY") or str(DEFAULT_CONCURRENCY)
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if limit < 1:
        raise ValueError(f"WVLP_CONCURRENCY={raw!r} must be a whole number >= 1")
    return limit


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write `path` through a private temp file in its folder, fsync, then rename it into place."""
    # A unique temp name per writer (threads share a pid) and a rename on the same file system: a reader or a
    # concurrent writer only ever sees the old file or the whole new one, and a killed writer leaves no half file.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- inputs


def _too_many_pixels(name: str, file_name: str, width: int, height: int) -> InputError:
    """The error of an image whose header declares more than `MAX_PIXELS` pixels."""
    return InputError(
        f"{name}: {file_name} is {width}x{height} = {width * height:,} pixels: too many pixels "
        f"(the limit is {MAX_PIXELS:,})"
    )


def _not_an_image(name: str, path: Path, file_name: str) -> InputError:
    """The error of a file PIL cannot parse as any supported format, naming what it looks like instead."""
    with path.open("rb") as handle:
        head = handle.read(512)
    if head.startswith(b"%PDF"):
        kind = "it is a PDF document"
    elif head.startswith(b"PK\x03\x04"):
        kind = "it is a ZIP archive"
    elif head.lstrip().startswith((b"<svg", b"<?xml")):
        kind = "it is SVG/XML text, and vector images are not supported"
    elif head and b"\0" not in head and all(c >= 32 or c in b"\t\r\n" for c in head[:64]):
        kind = "it is a text file"
    else:
        kind = f"its content is none of the supported formats ({', '.join(SUPPORTED_FORMATS)})"
    return InputError(f"{name}: {file_name} is not a readable image: {kind}")


def _open_image_file(path: Path, name: str, file_name: str) -> Image.Image:
    """A decoded image file; its format and header size are checked before a single pixel is decoded."""
    if not path.is_file():
        raise InputError(f"{name}: file {file_name} does not exist")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise InputError(
            f"{name}: {file_name}: {path.suffix or 'no extension'} is not an image type "
            f"({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    size = path.stat().st_size
    if size > MAX_UPLOAD_BYTES:
        raise InputError(
            f"{name}: {file_name} is {size / 2**20:.1f} MB, over the {MAX_UPLOAD_BYTES / 2**20:.0f} MB limit"
        )
    try:
        # `formats` keeps PIL to the raster formats above (no EPS through Ghostscript, no exotic plugins).
        pil = Image.open(path, formats=SUPPORTED_FORMATS)  # lazy: reads the header only
    except Image.DecompressionBombError as err:
        raise InputError(
            f"{name}: {file_name} has too many pixels to decode safely ({err}; the limit is {MAX_PIXELS:,})"
        ) from None
    except UnidentifiedImageError:
        raise _not_an_image(name, path, file_name) from None
    except OSError as err:
        raise InputError(f"{name}: {file_name} is not a readable image ({err})") from None
    if pil.width * pil.height > MAX_PIXELS:
        pil.close()
        raise _too_many_pixels(name, file_name, pil.width, pil.height)
    try:
        pil.load()
    except (OSError, ValueError, SyntaxError) as err:  # PIL plugins raise all three on broken pixel data
        raise InputError(f"{name}: {file_name} is a damaged {pil.format} image ({err})") from None
    return pil


def load_image(image: Any, name: str = "image") -> Image.Image:
    """An RGB PIL image from a file path, a Gradio file payload, a PIL image or an array; rejects bad input."""
    if image is None:
        raise InputError(f"no {name}: upload an image first")
    if isinstance(image, dict):  # the upload itself (events run with preprocess=False): {"path", "orig_name", ...}
        if not image.get("path"):
            raise InputError(f"no {name}: the upload carries no file")
        path = Path(image["path"])
        pil = _open_image_file(path, name, Path(image.get("orig_name") or path.name).name)
    elif isinstance(image, Image.Image):
        pil = image
    elif isinstance(image, np.ndarray):
        if image.ndim not in (2, 3) or image.size == 0:
            raise InputError(f"{name}: an array of shape {image.shape} is not an image")
        pil = Image.fromarray(image.astype(np.uint8) if image.dtype != np.uint8 else image)
    elif isinstance(image, (str, os.PathLike)):
        pil = _open_image_file(Path(image), name, Path(image).name)
    else:
        raise InputError(f"{name}: expected an image, got {type(image).__name__}")
    if pil.width * pil.height > MAX_PIXELS:
        raise _too_many_pixels(name, "the image", pil.width, pil.height)
    return pil.convert("RGB")


def check_text(text: Any, name: str = "text") -> str:
    """A stripped, non-empty string of at most `MAX_TEXT_CHARS` characters."""
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{name} is empty: type some text")
    if len(text) > MAX_TEXT_CHARS:
        raise InputError(f"{name} has {len(text)} characters; the limit is {MAX_TEXT_CHARS}")
    return text.strip()


def parse_class_names(text: Any) -> list[str]:
    """Class names separated by commas or new lines: at least 2, at most `MAX_CLASSES`, duplicates dropped."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("class names are empty: type at least two, separated by commas")
    names = list(dict.fromkeys(n.strip() for n in text.replace("\n", ",").split(",") if n.strip()))
    if len(names) < 2:
        raise InputError(f"only one class name ({names[0]!r}): zero-shot classification needs at least two")
    if len(names) > MAX_CLASSES:
        raise InputError(f"{len(names)} class names; the limit is {MAX_CLASSES}")
    for name in names:
        if len(name) > 100:
            raise InputError(f"class name {name[:30]!r}... is longer than 100 characters")
    return names


# ---------------------------------------------------------------- gallery


@dataclass
class Gallery:
    """Images to search (uint8 arrays) and their captions (class name or file name)."""

    images: list[np.ndarray]
    captions: list[str]
    source: str

    def content_hash(self) -> str:
        """sha256 over every image's shape and pixels and every caption."""
        digest = hashlib.sha256()
        for image, caption in zip(self.images, self.captions):
            digest.update(str(image.shape).encode() + caption.encode() + b"\0")
            digest.update(np.ascontiguousarray(image).tobytes())
        return digest.hexdigest()


def _gallery_from_folder(folder: Path, size: int) -> Gallery:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:size]
    if not files:
        raise FileNotFoundError(f"WVLP_GALLERY={folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    images = [np.asarray(load_image(p, f"gallery image {p.name}")) for p in files]
    captions = [p.parent.name if p.parent != folder else p.stem for p in files]
    return Gallery(images, captions, f"folder {folder}")


def _gallery_from_fashion_mnist(size: int) -> Gallery:
    from wvlp.data.fashion_mnist import CLASS_NAMES, load_fashion_mnist

    images, labels = load_fashion_mnist("test")
    return Gallery(list(images[:size]), [CLASS_NAMES[int(i)] for i in labels[:size]], "Fashion-MNIST test")


def _gallery_from_dataset(dataset_id: str, size: int) -> Gallery:
    import datasets

    split = datasets.load_dataset(dataset_id, "images", split="test")
    split = split.select(range(min(size, len(split))))
    names = split.features["label"].names
    images = [
        np.asarray(image.convert("RGB") if image.mode not in ("L", "RGB") else image) for image in split["image"]
    ]
    return Gallery(images, [names[i] for i in split["label"]], f"dataset {dataset_id} (test)")


def load_gallery(size: int | None = None) -> Gallery:
    """The images to search: `$WVLP_GALLERY`, else Fashion-MNIST test (project installed), else the release dataset."""
    size = size or int(os.environ.get("WVLP_GALLERY_SIZE", "500"))
    if size < 1:
        raise ValueError(f"WVLP_GALLERY_SIZE={size} must be >= 1")
    folder = os.environ.get("WVLP_GALLERY")
    if folder:
        return _gallery_from_folder(Path(folder), size)
    errors = []
    try:
        return _gallery_from_fashion_mnist(size)
    except (ImportError, FileNotFoundError) as err:
        errors.append(f"Fashion-MNIST: {err}")
    dataset_id = os.environ.get("WVLP_DATASET") or space_config().get("dataset")
    if dataset_id:
        try:
            return _gallery_from_dataset(dataset_id, size)
        except Exception as err:
            errors.append(f"dataset {dataset_id}: {err}")
    raise RuntimeError("no gallery to search: set WVLP_GALLERY to an image folder (" + "; ".join(errors) + ")")


def _thumbnail(image: np.ndarray) -> Image.Image:
    """A gallery image as shown: RGB, small ones enlarged (nearest neighbour) to `DISPLAY_SIZE`."""
    pil = Image.fromarray(image).convert("RGB")
    if max(pil.size) < DISPLAY_SIZE:
        scale = DISPLAY_SIZE / max(pil.size)
        pil = pil.resize((round(pil.width * scale), round(pil.height * scale)), Image.Resampling.NEAREST)
    return pil


def save_thumbnail(image: Image.Image, folder: Path) -> Path:
    """`image` as a PNG in `folder`, named by its content and written atomically; the file's path."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = buffer.getvalue()
    path = folder / f"{hashlib.sha256(data).hexdigest()[:32]}.png"
    # Same name, same bytes: an existing file is complete (it was renamed into place) and is reused. Gradio's own
    # PIL-to-file path rewrites a shared name in place, which served truncated files to concurrent searches.
    if not path.is_file():
        atomic_write(path, lambda handle: handle.write(data))
    return path


# ---------------------------------------------------------------- the demo


def model_fingerprint(model: torch.nn.Module) -> str:
    """sha256 of the model's class, config and every tensor: a cache key that changes with any weight."""
    digest = hashlib.sha256(type(model).__name__.encode() + model.config.to_json_string().encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class WVLPDemo:
    """The model, processor, gallery and LLM backend behind the four tabs; each tab is one method."""

    def __init__(
        self,
        model_id: str | None = None,
        gallery: Gallery | None = None,
        llm_spec: dict | None = None,
        embedding_cache: str | os.PathLike | None = None,
    ):
        from transformers import AutoModel, AutoProcessor

        self.model_id = model_id or default_model_id()
        self.model = AutoModel.from_pretrained(self.model_id, trust_remote_code=True).eval()
        self.processor = AutoProcessor.from_pretrained(self.model_id, trust_remote_code=True)
        self.fingerprint = model_fingerprint(self.model)
        self.gallery = gallery if gallery is not None else load_gallery()
        self.llm_spec = (
            llm_spec if llm_spec is not None else json.loads(os.environ.get("WVLP_LLM") or '{"type": "local"}')
        )
        self.cache = Path(embedding_cache) if embedding_cache is not None else cache_dir()
        self._gallery_embeddings: torch.Tensor | None = None
        self._gallery_lock = threading.Lock()  # concurrent first searches compute and write the cache once
        # The fast tokenizer sets padding/truncation state on each call: concurrent calls fail ("Already borrowed").
        self._tokenizer_lock = threading.Lock()
        self._thumbnails: Path | None = None
        self._backend: Any = None

    @property
    def can_describe_images(self) -> bool:
        """Whether the model has a working image -> text bridge (`generate_description` + `config.prompt_bridge`)."""
        # Newer models carry the method always but only work with the bridge configured; older ones lack both.
        return callable(getattr(self.model, "generate_description", None)) and bool(
            getattr(self.model.config, "prompt_bridge", True)
        )

    @torch.inference_mode()
    def _image_embeddings(self, images: list[Any], batch_size: int = 128) -> torch.Tensor:
        chunks = []
        for start in range(0, len(images), batch_size):
            pixels = self.processor(images=images[start : start + batch_size])["pixel_values"]
            chunks.append(self.model.get_image_features(pixels).pooler_output.float())
        return torch.cat(chunks)

    @torch.inference_mode()
    def _text_embeddings(self, texts: list[str]) -> torch.Tensor:
        with self._tokenizer_lock:
            inputs = self.processor(text=texts, padding=True)
        return self.model.get_text_features(inputs["input_ids"], inputs["attention_mask"]).pooler_output.float()

    def gallery_cache_file(self) -> Path:
        """The cache file of this model + gallery pair."""
        key = hashlib.sha256(f"{self.fingerprint}:{self.gallery.content_hash()}".encode()).hexdigest()[:24]
        return self.cache / f"gallery-{key}.pt"

    def _read_cached_embeddings(self, path: Path) -> torch.Tensor | None:
        """The embeddings in cache file `path` if it holds exactly the expected tensor, else None (with a warning)."""
        try:
            # weights_only: a cache file is data; a pickled object in it is refused, never run.
            value = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # truncated, garbage, foreign pickle: every failure means "rebuild"
            logger.warning(
                "gallery embedding cache %s is unreadable (%s: %s); rebuilding it",
                path,
                type(err).__name__,
                str(err).partition("\n")[0],
            )
            return None
        rows, dim = len(self.gallery.images), getattr(self.model.config, "embed_dim", None)
        if not isinstance(value, torch.Tensor):
            problem = f"holds a {type(value).__name__}, not a tensor"
        elif value.ndim != 2 or value.shape[0] != rows or (dim is not None and value.shape[1] != dim):
            problem = f"holds a tensor of shape {tuple(value.shape)}, not ({rows}, {dim})"
        elif not value.is_floating_point() or not torch.isfinite(value).all():
            problem = f"holds {value.dtype} values that are not all finite floats"
        else:
            return value.float()
        logger.warning("gallery embedding cache %s %s; rebuilding it", path, problem)
        return None

    def gallery_embeddings(self) -> torch.Tensor:
        """(N, D) normalised gallery embeddings, from the disk cache when this model and gallery were seen before."""
        with self._gallery_lock:
            if self._gallery_embeddings is None:
                path = self.gallery_cache_file()
                embeddings = self._read_cached_embeddings(path) if path.is_file() else None
                if embeddings is None:
                    embeddings = self._image_embeddings(self.gallery.images)
                    atomic_write(path, lambda handle: torch.save(embeddings, handle))
                self._gallery_embeddings = embeddings
        return self._gallery_embeddings

    def search(self, query: str, k: int = 8) -> list[tuple[Image.Image, str]]:
        """Text -> image: the top-k gallery images with their caption and cosine similarity."""
        query = check_text(query, "search text")
        k = max(1, min(int(k), len(self.gallery.images)))
        scores = self.gallery_embeddings() @ self._text_embeddings([query])[0]
        top = scores.topk(k)
        return [
            (_thumbnail(self.gallery.images[i]), f"{self.gallery.captions[i]} · {s:.3f}")
            for s, i in zip(top.values.tolist(), top.indices.tolist())
        ]

    def thumbnail_folder(self) -> Path:
        """A private temp folder of this demo's thumbnail files (Gradio serves files from the temp dir)."""
        if self._thumbnails is None:
            self._thumbnails = Path(tempfile.mkdtemp(prefix="wvlp-thumbnails-"))
        return self._thumbnails

    def search_files(self, query: str, k: int = 8) -> list[tuple[str, str]]:
        """`search` with each thumbnail saved as a complete PNG file: what the UI's gallery shows."""
        folder = self.thumbnail_folder()
        return [(str(save_thumbnail(image, folder)), caption) for image, caption in self.search(query, k)]

    def zero_shot(self, image: Any, class_names: str = DEFAULT_CLASSES) -> dict[str, float]:
        """Image -> probability of each class (prompt-ensemble classifier, the model's temperature)."""
        pil = load_image(image)
        names = parse_class_names(class_names)
        prompts = [template.format(name) for name in names for template in TEMPLATES]
        text = self._text_embeddings(prompts).view(len(names), len(TEMPLATES), -1).mean(1)
        text = torch.nn.functional.normalize(text, dim=-1)
        with torch.inference_mode():
            logits = self._image_embeddings([pil])[0] @ text.T / self.model.temperature().float()
        return dict(zip(names, logits.softmax(-1).tolist()))

    @torch.inference_mode()
    def match(self, image: Any, text: str) -> tuple[float, float]:
        """Image + text -> (ITM match probability, ITC cosine similarity)."""
        pil = load_image(image)
        text = check_text(text)
        with self._tokenizer_lock:
            inputs = self.processor(images=[pil], text=[text])
        itm = self.model.itm_score(inputs["input_ids"], inputs["attention_mask"], pixel_values=inputs["pixel_values"])
        image_embedding = self.model.get_image_features(inputs["pixel_values"]).pooler_output[0]
        text_embedding = self.model.get_text_features(inputs["input_ids"], inputs["attention_mask"]).pooler_output[0]
        return round(float(itm[0]), 4), round(float(image_embedding @ text_embedding), 4)

    def describe(self, label: str, num_descriptions: int = 3, max_new_tokens: int = 48) -> str:
        """Label -> descriptions written by the configured LLM backend, one prompt template each (Markdown)."""
        label = check_text(label, "label")
        n = max(1, min(int(num_descriptions), 9))
        max_new_tokens = max(1, min(int(max_new_tokens), 256))
        try:
            from wvlp.data.llm import GenerationRequest, build_backend
            from wvlp.data.prompts import load_prompts, render
            from wvlp.data.sources import ClassInfo
        except ImportError:
            return self._describe_with_transformers(label, n, max_new_tokens)
        if self._backend is None:
            try:
                self._backend = build_backend(self.llm_spec)
            except Exception as err:
                raise InputError(
                    f"the description LLM ({self.llm_spec.get('type')}) is not available: {err}"
                ) from None
        cls = ClassInfo(label=0, class_id=label, name=label, prompt_name=label)
        templates = load_prompts()[:n]
        requests = [
            GenerationRequest(
                key=t.id, messages=render(t, cls), max_new_tokens=max_new_tokens, temperature=0.7, seed=i
            )
            for i, t in enumerate(templates)
        ]
        results = {}
        self._backend.generate(requests, lambda result: results.__setitem__(result.key, result))
        lines = []
        for template in templates:
            result = results.get(template.id)
            if result is not None and result.text is not None:
                text = result.text.strip() or "_(empty reply)_"  # a server may answer with null content
            else:
                text = f"_(failed: {result.error if result else 'no answer'})_"
            lines.append(f"- **{template.aspect}**: {text}")
        return f"Descriptions of **{label}** ({getattr(self._backend, 'name', 'LLM')}):\n\n" + "\n".join(lines)

    def _describe_with_transformers(self, label: str, n: int, max_new_tokens: int) -> str:
        """Without the project (a plain Space): the instruct LLM through transformers, one generic prompt."""
        try:
            if self._backend is None:
                from transformers import AutoModelForCausalLM, AutoTokenizer

                name = os.environ.get("WVLP_LLM_MODEL", FALLBACK_LLM)
                self._backend = (
                    AutoTokenizer.from_pretrained(name),
                    AutoModelForCausalLM.from_pretrained(name).eval(),
                )
            tokenizer, lm = self._backend
        except Exception as err:
            raise InputError(
                f"no description LLM available here ({err}); install the wvlp project or set "
                "WVLP_LLM_MODEL to a chat model"
            ) from None
        messages = [{"role": "user", "content": f"Describe what a {label} looks like in a photo, in one sentence."}]
        ids = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        outputs = []
        with torch.inference_mode():
            for seed in range(n):
                torch.manual_seed(seed)
                out = lm.generate(**ids, max_new_tokens=max_new_tokens, do_sample=True, temperature=0.7)
                outputs.append(tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip())
        return f"Descriptions of **{label}**:\n\n" + "\n".join(f"- {text}" for text in outputs)

    @torch.inference_mode()
    def describe_image(self, image: Any) -> str:
        """Image -> text through the model's `generate_description` (only models that have one)."""
        if not self.can_describe_images:
            raise InputError("this model has no image-to-text bridge (generate_description)")
        pixels = self.processor(images=[load_image(image)])["pixel_values"]
        out = self.model.generate_description(pixel_values=pixels, max_new_tokens=32)
        return out[0] if isinstance(out, (list, tuple)) else str(out)


# ---------------------------------------------------------------- the UI


def _shown_as_gradio_error(fn):
    """Bad input and failures reach the user as a `gr.Error` message, never as a traceback."""
    import gradio as gr

    @functools.wraps(fn)
    def wrapper(*args):
        try:
            return fn(*args)
        except gr.Error:
            raise
        except InputError as err:
            raise gr.Error(str(err)) from None
        except Exception as err:
            logger.exception("%s failed", fn.__name__)
            raise gr.Error(f"{fn.__name__} failed: {type(err).__name__}: {err}") from None

    return wrapper


def build_ui(demo: WVLPDemo):
    """The Gradio 6 Blocks app; theme and css go to `launch(**LAUNCH_KWARGS)`."""
    import gradio as gr

    ui = _shown_as_gradio_error
    # Model events share one pool of `WVLP_CONCURRENCY` workers; uploads arrive unprocessed (preprocess=False: Gradio
    # would open them with PIL first and answer a bad one with a generic error) and `load_image` validates them.
    model = {"concurrency_limit": concurrency_limit(), "concurrency_id": "model"}
    upload = {**model, "preprocess": False}
    with gr.Blocks(title="WVLP demo") as blocks:
        gr.Markdown(
            f"# WVLP: vision-language pre-training without captions\nModel `{demo.model_id}` · gallery: "
            f"{len(demo.gallery.images)} images from {demo.gallery.source}"
        )
        with gr.Tab("Text → image search", id="search"):
            with gr.Row():
                query = gr.Textbox(label="Search text", value="a sneaker", elem_id="search-query", scale=4)
                k = gr.Slider(1, 32, value=8, step=1, label="Top k", elem_id="search-k")
            search_button = gr.Button("Search", variant="primary", elem_id="search-button")
            gallery = gr.Gallery(
                label="Results (cosine similarity)", columns=8, height="auto", elem_id="search-gallery"
            )
            search_button.click(ui(demo.search_files), [query, k], gallery, api_name="search", **model)
            query.submit(ui(demo.search_files), [query, k], gallery, api_visibility="private", **model)
        with gr.Tab("Zero-shot classification", id="zero-shot"):
            with gr.Row():
                zs_image = gr.Image(
                    type="filepath", label="Image", sources=["upload", "clipboard"], elem_id="zs-image"
                )
                with gr.Column():
                    classes = gr.Textbox(
                        label="Class names (comma-separated, editable)",
                        value=DEFAULT_CLASSES,
                        lines=3,
                        elem_id="zs-classes",
                    )
                    zs_button = gr.Button("Classify", variant="primary", elem_id="zs-button")
            probabilities = gr.Label(num_top_classes=10, label="Probabilities", elem_id="zs-label")
            zs_button.click(ui(demo.zero_shot), [zs_image, classes], probabilities, api_name="zero_shot", **upload)
        with gr.Tab("Image + text match", id="match"):
            with gr.Row():
                m_image = gr.Image(type="filepath", label="Image", sources=["upload", "clipboard"], elem_id="m-image")
                with gr.Column():
                    m_text = gr.Textbox(label="Text", value="a photo of a sneaker", elem_id="m-text")
                    m_button = gr.Button("Score", variant="primary", elem_id="m-button")
                    itm = gr.Number(label="ITM match probability", elem_id="m-itm")
                    itc = gr.Number(label="ITC cosine similarity", elem_id="m-itc")
            m_button.click(ui(demo.match), [m_image, m_text], [itm, itc], api_name="match", **upload)
        with gr.Tab("Label → descriptions", id="describe"):
            gr.Markdown(
                "The descriptions that pre-training pairs with images are written by an LLM from the label "
                "alone. Try it:",
                elem_classes="wvlp-note",
            )
            with gr.Row():
                label = gr.Textbox(label="Label", value="sneaker", elem_id="d-label", scale=3)
                count = gr.Slider(1, 9, value=3, step=1, label="Descriptions")
                tokens = gr.Slider(8, 128, value=48, step=8, label="Max new tokens")
            d_button = gr.Button("Describe", variant="primary", elem_id="d-button")
            descriptions = gr.Markdown(elem_id="d-output")
            d_button.click(ui(demo.describe), [label, count, tokens], descriptions, api_name="describe")
        if demo.can_describe_images:
            with gr.Tab("Image → description", id="caption"):
                c_image = gr.Image(type="filepath", label="Image", sources=["upload", "clipboard"])
                c_button = gr.Button("Describe the image", variant="primary")
                caption = gr.Textbox(label="Description")
                c_button.click(ui(demo.describe_image), c_image, caption, api_name="describe_image", **upload)
    return blocks


def launch_kwargs() -> dict[str, Any]:
    """App-level look (Gradio 6 takes theme and css in `launch`, not in `Blocks`)."""
    import gradio as gr

    return {"theme": gr.themes.Soft(), "css": CSS}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    build_ui(WVLPDemo()).launch(**launch_kwargs())

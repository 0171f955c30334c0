"""Functions, classes and constants shared by several test modules (`from tests.helpers import ...`). The shared
fixtures are in conftest.py. Heavy project modules are imported inside the functions that need them."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import socket
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from wvlp.data.llm import DescriptionBackend, GenerationRequest, GenerationResult
from wvlp.train.presets import TINY_LM as TINY_LM_PRESET
from wvlp.train.presets import TINY_TEXT

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM

    from wvlp.modeling import PFormerModel, WVLPForPreTraining, WVLPModel

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------------------- tiny models


def tiny_config_kwargs(**overrides) -> dict:
    """A random-weight WVLP small enough for unit tests (runs in milliseconds)."""
    kwargs = dict(
        vision_config=dict(variant="lite0", image_size=32),
        text_config={**TINY_TEXT, "vocab_size": 120, "max_position_embeddings": 64},
        fusion_layer=1,
        embed_dim=16,
        queue_size=16,
    )
    kwargs.update(overrides)
    return kwargs


def tiny_batch(batch_size: int = 6, length: int = 8, seed: int = 0, knowledge: int = 2, image_size: int = 32) -> dict:
    """A pre-training batch with every optional input (MLM, augmented view, retrieved knowledge)."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 120, (batch_size, length), generator=g)
    input_ids[:, 0] = 1
    attention_mask = torch.ones(batch_size, length, dtype=torch.long)
    attention_mask[0, -2:] = 0
    mlm_labels = torch.full_like(input_ids, -100)
    masked = torch.rand(batch_size, length, generator=g) < 0.3
    masked[:, 0] = False
    masked[:, 2] = True
    mlm_labels[masked] = input_ids[masked]
    mlm_input_ids = input_ids.masked_fill(masked, 4)
    pixel_values = torch.randn(batch_size, 3, image_size, image_size, generator=g)
    batch = dict(
        pixel_values=pixel_values,
        input_ids=input_ids,
        attention_mask=attention_mask,
        category_ids=torch.arange(batch_size) % 3,
        mlm_input_ids=mlm_input_ids,
        mlm_labels=mlm_labels,
        pixel_values_aug=pixel_values.flip(-1),
    )
    if knowledge:
        batch["knowledge_input_ids"] = torch.randint(5, 120, (batch_size, knowledge, 6), generator=g)
        batch["knowledge_attention_mask"] = torch.ones(batch_size, knowledge, 6, dtype=torch.long)
        valid = torch.ones(batch_size, knowledge, dtype=torch.bool)
        valid[1, -1] = False
        batch["knowledge_valid"] = valid
    return batch


def locked_text_batch(batch: dict, seed: int = 0) -> dict:
    """`batch` as a locked-text step's inputs: random pooled text (as the text-embedding cache gives) for its tokens."""
    g = torch.Generator().manual_seed(seed)
    batch_size, hidden = batch["pixel_values"].shape[0], TINY_TEXT["hidden_size"]
    locked = {
        k: batch[k] for k in ("pixel_values", "category_ids", "pixel_values_aug", "knowledge_valid") if k in batch
    }
    locked["text_pooler_output"] = torch.randn(batch_size, hidden, generator=g)
    if "knowledge_valid" in batch:
        k = batch["knowledge_valid"].shape[1]
        locked["knowledge_pooler_output"] = torch.randn(batch_size, k, hidden, generator=g)
    return locked


TINY_LM = {**TINY_LM_PRESET, "vocab_size": 120, "max_position_embeddings": 128}


def tiny_lm(seed: int = 0, initializer_range: float = 0.02) -> LlamaForCausalLM:
    """A random tiny Llama causal LM (the frozen language model of the P-Former and the bridge)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(**TINY_LM, initializer_range=initializer_range))


def tiny_pformer(**overrides) -> PFormerModel:
    """A random tiny P-Former with the text tower of `tiny_config_kwargs`."""
    from wvlp.modeling import PFormerConfig, PFormerModel

    torch.manual_seed(1)
    kwargs = dict(text_config=tiny_config_kwargs()["text_config"], num_prompts=4, prompt_dim=32, embed_dim=16)
    return PFormerModel(PFormerConfig(**{**kwargs, **overrides}))


# ---------------------------------------------------------------------------------------------------- saved checkpoints

FOLDER = Path(__file__).resolve().parent / "fixtures" / "saved_checkpoints"


def machine_kind() -> str:
    """CPU vendor and the SIMD level torch dispatches to: what decides how float kernels round on a CPU."""
    vendor = (
        next(
            (
                line.split(":")[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("vendor_id")
            ),
            "unknown",
        )
        if Path("/proc/cpuinfo").is_file()
        else "unknown"
    )
    return f"{vendor}-{torch.backends.cpu.get_cpu_capability()}"


VIT = dict(
    model_type="vit",
    hidden_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=64,
    image_size=32,
    patch_size=8,
)


@torch.no_grad()
def model_outputs(model: WVLPModel, batch: dict) -> dict[str, torch.Tensor]:
    """What inference with a published model computes: embeddings, similarity logits and ITM scores."""
    out = model(
        input_ids=batch["input_ids"], pixel_values=batch["pixel_values"], attention_mask=batch["attention_mask"]
    )
    itm = model.itm_score(batch["input_ids"], batch["attention_mask"], pixel_values=batch["pixel_values"])
    return {
        "image_embeds": out.image_embeds,
        "text_embeds": out.text_embeds,
        "logits_per_image": out.logits_per_image,
        "itm_score": itm,
    }


@torch.no_grad()
def pretraining_outputs(model: WVLPForPreTraining, batch: dict) -> dict[str, torch.Tensor]:
    """Every loss term of one pre-training forward (hard negatives drawn under a fixed seed) and the saved state."""
    torch.manual_seed(0)
    out = model(**batch)
    terms = {k: v for k, v in out.items() if k.endswith("loss") and v is not None}
    state = {f"buffer.{name}": b for name, b in model.named_buffers() if "queue" in name or "ptr" in name}
    return {**terms, **state}


# -------------------------------------------------------------------------------------------- images, datasets, folders


def png_bytes(value: int, size: int = 8) -> bytes:
    """A `size` x `size` RGB PNG filled with one grey `value`, as file bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def save_hf(path, label_feature, labels, images=None):
    """A saved `datasets` DatasetDict (train: every row, test: the first) with image, label and id columns."""
    import datasets

    images = images or [png_bytes(10 * i) for i in range(len(labels))]
    features = datasets.Features({"image": datasets.Image(), "label": label_feature, "id": datasets.Value("string")})
    rows = {
        "image": [{"bytes": b, "path": None} for b in images],
        "label": labels,
        "id": [f"row-{i}" for i in range(len(labels))],
    }
    split = datasets.Dataset.from_dict(rows, features=features)
    datasets.DatasetDict({"train": split, "test": split.select([0])}).save_to_disk(str(path))
    return path


def make_images(root: Path, classes: dict[str, int], value: int = 40) -> Path:
    """An image folder under `root`: per class name, that many small PNGs of distinct grey values."""
    for offset, (name, count) in enumerate(classes.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            (root / name / f"img{i}.png").write_bytes(png_bytes(value + 10 * offset + i))
    return root


def tree(folder: Path) -> dict[str, str]:
    """Every file under `folder` (relative path -> SHA-256): what a run must leave exactly as it was."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# --------------------------------------------------------------------------------------------- description LLM backends


class EchoBackend:
    """A tiny in-process backend: answers each request with its key, logs what it was asked."""

    name, revision = "echo", "v1"

    def __init__(self, fail: set[str] = frozenset()):
        self.fail, self.requested = set(fail), []

    def generate(self, requests, on_result):
        for request in requests:
            self.requested.append(request)
            if request.key in self.fail:
                on_result(GenerationResult(request.key, None, error="injected failure"))
            else:
                on_result(GenerationResult(request.key, f"A description for {request.key}."))


def chat(prompt: str) -> list[dict[str, str]]:
    """A system + user chat whose user message is `prompt`."""
    return [{"role": "system", "content": "You write short descriptions."}, {"role": "user", "content": prompt}]


def run(backend: DescriptionBackend, requests: list[GenerationRequest]) -> dict[str, GenerationResult]:
    """Generate and check that every request is reported exactly once."""
    results: list[GenerationResult] = []
    backend.generate(requests, results.append)
    assert sorted(r.key for r in results) == sorted(r.key for r in requests)
    return {r.key: r for r in results}


# ------------------------------------------------------------------------------------------------------ image processor

S = 32  # output side used by most tests (small: fast)


def rgb_u8(h=23, w=37, seed=0):
    """A random `h` x `w` RGB uint8 array."""
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def pv(ip, image, **kwargs) -> torch.Tensor:
    """The pixel_values the image processor `ip` gives `image`."""
    return ip(image, **kwargs)["pixel_values"]


def pil_inputs():
    """One PIL image of every mode the image processor accepts, by mode name."""
    rgb = Image.fromarray(rgb_u8())
    u16 = np.random.default_rng(1).integers(0, 65536, size=(19, 29), dtype=np.uint16)
    palette_t = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette_t.info["transparency"] = 3
    return {
        "RGB": rgb,
        "L": rgb.convert("L"),
        "1": rgb.convert("1"),
        "LA": rgb.convert("LA"),
        "La": rgb.convert("LA").convert("La"),
        "RGBA": rgb.convert("RGBA"),
        "RGBa": rgb.convert("RGBa"),
        "PA": rgb.convert("PA"),
        "P": rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16),
        "P+transparency": palette_t,
        "CMYK": rgb.convert("CMYK"),
        "YCbCr": rgb.convert("YCbCr"),
        "HSV": rgb.convert("HSV"),
        "LAB": rgb.convert("LAB"),
        "I;16": Image.fromarray(u16),
        "I;16B": Image.fromarray(u16.astype(">u2")),
        "I": Image.fromarray(u16.astype(np.int32)),
        "F": Image.fromarray(np.random.default_rng(2).random((13, 11), dtype=np.float32)),
    }


# A fresh interpreter that never imports modeling_wvlp: `python -c CHILD folders images texts_json out.pt` loads each
# folder with AutoProcessor (trust_remote_code) and saves what it gives the images and texts.
CHILD = textwrap.dedent(
    """
    import json, sys
    import torch
    from transformers import AutoProcessor
    folders, images, texts, out = sys.argv[1].split(","), sys.argv[2].split(","), json.loads(sys.argv[3]), sys.argv[4]
    results = {}
    for folder in folders:
        processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
        for name in (type(processor), type(processor.image_processor)):
            assert name.__module__.startswith("transformers_modules."), name.__module__
        results[folder] = dict(processor(images=images, text=texts))
    imported = [m for m in sys.modules if m == "modeling_wvlp" or m.startswith("modeling_wvlp.")]
    assert not imported, imported
    torch.save(results, out)
    """
)


# -------------------------------------------------------------------------------------------------------------- publish

TOKEN = "hf_TESTtokenThatMustNeverBePrinted"

EVAL = {
    "schema": "wvlp-eval/1",
    "model": {"path": "out/run/model", "stage": "pre-trained", "image_size": 96, "config_sha256": "0" * 64},
    "data": {
        "name": "fashion-mnist",
        "split": "test",
        "num_images": 10000,
        "num_texts": 69,
        "classnames_file": "classes.txt",
        "templates_file": "templates.txt",
    },
    "command": "wvlp evaluate --model out/run --task zero_shot --task retrieval --data fashion-mnist",
    "created": "2026-11-22T10:00:00+00:00",
    "metrics": {
        "zero_shot": {
            "top1": 0.6123,
            "top5": 0.9517,
            "per_class": {"T-shirt/top": 0.701, "Trouser": 0.912},
            "seen_top1": None,
            "unseen_top1": None,
            "harmonic": None,
        },
        "zero_shot_descriptions": {"top1": 0.5802, "top5": 0.9333},
        "retrieval": {
            "itm_k": 16,
            "itc": {
                "i2t_r1": 0.31,
                "i2t_r5": 0.62,
                "i2t_r10": 0.81,
                "t2i_r1": 0.22,
                "t2i_r5": 0.51,
                "t2i_r10": 0.7,
                "rsum": 3.17,
                "i2t_mean_rank": 4.2,
                "i2t_median_rank": 2,
                "t2i_mean_rank": 5.5,
                "t2i_median_rank": 3,
            },
            "itm": {
                "i2t_r1": 0.35,
                "i2t_r5": 0.66,
                "i2t_r10": 0.83,
                "t2i_r1": 0.25,
                "t2i_r5": 0.55,
                "t2i_r10": 0.72,
                "rsum": 3.36,
                "i2t_mean_rank": 3.9,
                "i2t_median_rank": 2,
                "t2i_mean_rank": 5.0,
                "t2i_median_rank": 3,
            },
        },
        "linear_probe": {"top1": 0.8344, "train_samples": 60000},
    },
}


def save_tiny_model(folder: Path) -> Path:
    """A random tiny WVLPModel + the real MiniLM tokenizer, saved like a run's `model/` (remote code included)."""
    from wvlp.modeling import WVLPConfig, WVLPImageProcessor, WVLPModel, WVLPProcessor, build_default_processor

    kwargs = tiny_config_kwargs()
    kwargs["text_config"]["vocab_size"] = 30522  # the BERT uncased vocabulary of the real tokenizer
    WVLPModel(WVLPConfig(**kwargs)).eval().save_pretrained(folder)
    tokenizer = build_default_processor().tokenizer
    WVLPProcessor(WVLPImageProcessor(size=32), tokenizer, max_length=16).save_pretrained(folder)
    return folder


class HubRecorder:
    """Stands in for the Hub behind `HfApi`: records calls, keeps committed files, fails on request."""

    def __init__(self):
        self.calls: list[tuple[str, str, dict]] = []
        self.repos: dict[str, dict] = {}  # repo_id -> {"type", "private", "files": {path: bytes}}
        self.fail_uploads: list[str] = []  # repo types whose next upload_folder raises

    def create_repo(self, repo_id, *, repo_type=None, private=None, exist_ok=False, space_sdk=None, **kwargs):
        self.calls.append(("create_repo", repo_id, dict(repo_type=repo_type, exist_ok=exist_ok, space_sdk=space_sdk)))
        if repo_id in self.repos and not exist_ok:
            raise RuntimeError(f"409 Conflict: {repo_id} exists")
        self.repos.setdefault(repo_id, {"type": repo_type, "private": private, "files": {}})
        return f"https://hub.test/{repo_id}"

    def upload_folder(self, *, repo_id, folder_path, repo_type=None, commit_message=None, **kwargs):
        self.calls.append(("upload_folder", repo_id, dict(repo_type=repo_type, commit_message=commit_message)))
        if repo_type in self.fail_uploads:
            self.fail_uploads.remove(repo_type)
            raise ConnectionError("502 Bad Gateway while uploading model.safetensors")
        folder = Path(folder_path)
        files = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        self.repos[repo_id]["files"].update(files)  # one commit: all files or none
        return f"https://hub.test/{repo_id}/commit/{len(self.calls)}"

    def list_repo_files(self, repo_id, *, repo_type=None, **kwargs):
        return sorted(self.repos.get(repo_id, {"files": {}})["files"])


def cli_args(release, *extra):
    """`wvlp publish` arguments for the `release` fixture's inputs (org test-org, its own staging folder)."""
    return [
        "publish",
        "--model",
        str(release["run"]),
        "--dataset",
        str(release["corpus"]),
        "--space",
        str(ROOT / "spaces_demo"),
        "--org",
        "test-org",
        "--eval",
        str(release["eval"]),
        "--staging",
        str(release["staging"]),
        *extra,
    ]


# ---------------------------------------------------------------------------------------------------------------- Space


def load_script(path: Path, name: str):
    """A file of a folder that is not a package (the Space, a benchmark) as module `name`."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def load_app():
    """spaces_demo/app.py as a module."""
    return load_script(ROOT / "spaces_demo" / "app.py", "wvlp_space_app")


def torchrun(nproc: int, *target: str) -> list[str]:
    """The command that runs `target` (a script and its arguments, or `--module name ...`) in `nproc` local processes."""
    with socket.socket() as s:  # a free port, so parallel runs never meet
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rendezvous = ["--master_addr", "127.0.0.1", "--master_port", str(port)]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), *rendezvous, *target]

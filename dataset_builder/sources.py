"""Label sources: labelled images and their classes (names, stable ids, WordNet glosses) behind one interface."""

from __future__ import annotations

import inspect
import io
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from wvlp.data.holdout import resolve_holdout

WNID_PATTERN = re.compile(r"n\d{8}")
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".jfif"}
)
_SPLIT_DIRS = ("train", "validation", "val", "test")


@dataclass(frozen=True)
class ClassInfo:
    """One category: its integer label, a stable id, the original name and the name used in prompts."""

    label: int
    class_id: str
    name: str
    prompt_name: str
    gloss: str | None = None
    synonyms: tuple[str, ...] = ()


@dataclass
class Example:
    """One labelled image; `image_id` is stable across runs."""

    image: Any
    label: int
    image_id: str


def clean_label(name: str) -> str:
    """The prompt form of a label: "T-shirt/top" -> "T-shirt or top", "Ankle boot" -> "ankle boot".

    Underscores become spaces, "/" becomes " or ", and for comma lists ("tench, Tinca tinca") only the first item
    is kept. A Capitalised word is lower-cased; acronyms (NASA), mixed case (iPhone) and single-letter prefixes
    (T-shirt, X-ray) are kept, since their case carries meaning.
    """
    text = name.replace("_", " ").split(",")[0]
    text = re.sub(r"\s*/\s*", " or ", text)
    words = []
    for word in text.split():
        head = word.split("-")[0]
        capitalised = len(head) > 1 and head[0].isupper() and word[1:] == word[1:].lower()
        words.append(word.lower() if capitalised else word)
    return " ".join(words)


def _synonyms_of(name: str) -> tuple[str, ...]:
    """Alternative names written into a label: the items of "a, b" and the halves of "a/b"."""
    parts = [p.strip().replace("_", " ") for p in re.split(r",|/", name)]
    parts = [p for p in parts if p]
    return tuple(parts) if len(parts) > 1 else ()


def class_from_name(label: int, name: str, source_name: str) -> ClassInfo:
    """A ClassInfo from a label name; WordNet ids (n01234567) are resolved to their synset.

    The class id is "<source>:<name>", never the label: labels are positions, which move when a class is added,
    removed or renamed, and cached descriptions are keyed by class id.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{source_name}: label {label} has no name (got {name!r})")
    name = name.strip()
    if WNID_PATTERN.fullmatch(name):
        return class_from_wnid(label, name, source_name)
    return ClassInfo(label, f"{source_name}:{name}", name, clean_label(name), None, _synonyms_of(name))


def class_from_wnid(label: int, wnid: str, source_name: str) -> ClassInfo:
    """A ClassInfo whose name, gloss and synonyms are those of WordNet synset `wnid`."""
    from wvlp.data.wordnet import WordNet  # WordNet is only read for sources that name classes by WordNet id

    try:
        synset = WordNet.load().synset(wnid)
    except KeyError:
        synset = None
    if synset is None:
        raise ValueError(
            f"{source_name}: class {wnid!r} (label {label}) looks like a WordNet id but WordNet has no such "
            "noun synset; rename it to the class name"
        )
    lemmas = [lemma.replace("_", " ") for lemma in synset.lemmas]
    return ClassInfo(label, wnid, lemmas[0], clean_label(lemmas[0]), synset.gloss, tuple(lemmas[1:]))


def validate_classes(classes: list[ClassInfo], source_name: str) -> None:
    """Raise ValueError unless the classes are non-empty, named, with unique labels and class ids."""
    if not classes:
        raise ValueError(f"{source_name}: the source has no classes")
    seen_labels: dict[int, str] = {}
    seen_ids: dict[str, int] = {}
    seen_prompts: dict[str, str] = {}
    for cls in classes:
        if not cls.name.strip() or not cls.prompt_name.strip():
            raise ValueError(f"{source_name}: label {cls.label} has no name")
        if cls.label in seen_labels:
            raise ValueError(
                f"{source_name}: label {cls.label} is used by {seen_labels[cls.label]!r} and {cls.name!r}"
            )
        if cls.class_id in seen_ids:
            raise ValueError(
                f"{source_name}: class id {cls.class_id!r} is used by labels {seen_ids[cls.class_id]} and {cls.label}"
            )
        # "Sandal" and "sandal" would be prompted, described and matched as one class: two labels, one text.
        prompt_key = " ".join(cls.prompt_name.casefold().split())
        if prompt_key in seen_prompts:
            raise ValueError(
                f"{source_name}: classes {seen_prompts[prompt_key]!r} and {cls.name!r} have the same "
                f"prompt name {cls.prompt_name!r}: merge or rename one of them"
            )
        seen_labels[cls.label], seen_ids[cls.class_id], seen_prompts[prompt_key] = cls.name, cls.label, cls.name


def decode_image(data: bytes | str | os.PathLike) -> tuple[Image.Image | None, str | None]:
    """(decoded PIL image, None) or (None, why it cannot be read) for encoded bytes or a file path."""
    try:
        if isinstance(data, (bytes, bytearray)):
            if not data:
                return None, "empty image data (0 bytes)"
            image = Image.open(io.BytesIO(data))
        else:
            if os.path.getsize(data) == 0:
                return None, "empty file (0 bytes)"
            image = Image.open(data)
        image.load()  # decode now: a truncated file must be skipped here, not crash a consumer later
        # As transformers.image_utils.load_image does: the stored pixels are upright, the EXIF flag is dropped.
        return ImageOps.exif_transpose(image), None
    except Exception as err:  # PIL raises many types (OSError, SyntaxError, ValueError...) for bad files
        return None, f"unreadable image: {type(err).__name__}: {err}"


class LabelSource(ABC):
    """Labelled images of named classes, streamed split by split; unreadable images are skipped and listed."""

    name: str
    classes: list[ClassInfo]
    splits: tuple[str, ...]

    def __init__(self) -> None:
        self._skipped: dict[str, str] = {}

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """(image_id, reason) of every image skipped so far, each once."""
        return list(self._skipped.items())

    def _skip(self, image_id: str, reason: str) -> None:
        self._skipped.setdefault(image_id, reason)

    def _check_split(self, split: str) -> None:
        if split not in self.splits:
            raise ValueError(f"{self.name}: unknown split {split!r}; the source has {list(self.splits)}")

    def holdout_labels(self, holdout_classes: Collection[int | str] | None) -> frozenset[int]:
        """The labels of `holdout_classes`, given as labels, class names or class ids (unknown ones raise ValueError)."""
        names = {cls.label: (cls.class_id, cls.name) for cls in self.classes}
        return resolve_holdout(names, holdout_classes, setting=f"{self.name}: holdout_classes")

    def class_by_label(self, label: int) -> ClassInfo:
        """The ClassInfo of `label`."""
        for cls in self.classes:
            if cls.label == label:
                return cls
        raise KeyError(f"{self.name}: no class has label {label}")

    @abstractmethod
    def iter_examples(self, split: str, holdout_classes: Collection[int | str] | None = None) -> Iterator[Example]:
        """Stream the examples of `split`, leaving out `holdout_classes` (labels or class ids)."""

    @abstractmethod
    def num_examples(self, split: str) -> int | None:
        """How many examples `split` holds (before skipping bad images), or None when unknown."""


# WordNet 3.0 synsets of the Fashion-MNIST classes. "T-shirt/top" and "Ankle boot" have no single synset:
# their glosses are written here from the WordNet glosses of T-shirt + top and boot.
_FASHION_MNIST = (
    (
        "fashion-mnist:0",
        "T-shirt or top",
        "a close-fitting pullover shirt, or a light garment that covers the body from the shoulders to the waist",
        ("T-shirt", "tee shirt", "top"),
    ),
    (
        "n04489008",
        "trousers",
        "a garment extending from the waist to the knee or ankle, covering each leg separately",
        ("trouser", "pant"),
    ),
    ("n04021028", "pullover", "a sweater that is put on by pulling it over the head", ("slipover",)),
    ("n03236735", "dress", "a one-piece garment for a woman; has skirt and bodice", ("frock",)),
    (
        "n03057021",
        "coat",
        "an outer garment that has sleeves and covers the body from shoulder down; worn outdoors",
        (),
    ),
    ("n04133789", "sandal", "a shoe consisting of a sole fastened by straps to the foot", ()),
    ("n04197391", "shirt", "a garment worn on the upper half of the body", ()),
    ("n03472535", "sneaker", "a canvas shoe with a pliable rubber sole", ("gym shoe", "tennis shoe")),
    ("n02773037", "bag", "a flexible container with a single opening", ()),
    ("fashion-mnist:9", "ankle boot", "a boot that covers the foot and reaches just above the ankle", ()),
)


class FashionMNISTSource(LabelSource):
    """Fashion-MNIST (the embedded default): 10 clothing classes, 28x28 grey images, splits train/test."""

    def __init__(self, name: str = "fashion-mnist") -> None:
        from wvlp.data.fashion_mnist import CLASS_NAMES

        super().__init__()
        self.name = name
        self.splits = ("train", "test")
        self.classes = [
            ClassInfo(label, class_id, CLASS_NAMES[label], prompt_name, gloss, synonyms)
            for label, (class_id, prompt_name, gloss, synonyms) in enumerate(_FASHION_MNIST)
        ]
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def _load(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        from wvlp.data.fashion_mnist import load_fashion_mnist

        self._check_split(split)
        if split not in self._arrays:
            self._arrays[split] = load_fashion_mnist(split)
        return self._arrays[split]

    def iter_examples(self, split: str, holdout_classes: Collection[int | str] | None = None) -> Iterator[Example]:
        """Stream `split` as PIL grey images with ids "fashion-mnist/<split>/<index>"."""
        holdout = self.holdout_labels(holdout_classes)
        images, labels = self._load(split)
        for index in range(len(labels)):
            label = int(labels[index])
            if label not in holdout:
                yield Example(Image.fromarray(images[index]), label, f"{self.name}/{split}/{index:05d}")

    def num_examples(self, split: str) -> int:
        """60000 for train, 10000 for test."""
        return len(self._load(split)[1])


class ImageFolderSource(LabelSource):
    """A folder with one subfolder per class (optionally under train/ and test/); n01234567 names use WordNet."""

    def __init__(self, root: str | os.PathLike, name: str = "imagefolder") -> None:
        super().__init__()
        self.name = name
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"{name}: image folder {str(self.root)!r} does not exist or is not a folder")
        subdirs = sorted(self._class_dirs(self.root))
        if subdirs and set(subdirs) <= set(_SPLIT_DIRS):
            self.splits = tuple(s for s in _SPLIT_DIRS if s in subdirs)
            self._split_roots = {s: self.root / s for s in self.splits}
        else:
            self.splits = ("train",)
            self._split_roots = {"train": self.root}
        folders = sorted({f for split_root in self._split_roots.values() for f in self._class_dirs(split_root)})
        if not folders:
            raise ValueError(f"{name}: {str(self.root)!r} has no class subfolders (expected one folder per class)")
        by_name: dict[str, str] = {}
        for folder in folders:  # "boot" and "boot " would become one class name for two labels
            other = by_name.setdefault(folder.strip(), folder)
            if other != folder:
                raise ValueError(
                    f"{name}: class folders {other!r} and {folder!r} have the same name once "
                    "surrounding spaces are stripped: merge or rename one of them"
                )
        self._folders = folders
        self.classes = [class_from_name(label, folder, name) for label, folder in enumerate(folders)]
        validate_classes(self.classes, name)
        if not any(self._has_image(r / f) for r in self._split_roots.values() for f in folders):
            raise ValueError(
                f"{name}: {str(self.root)!r} has class folders but no image files ({sorted(IMAGE_EXTENSIONS)})"
            )
        self._counts: dict[str, int] = {}

    @staticmethod
    def _class_dirs(split_root: Path) -> list[str]:
        if not split_root.is_dir():
            return []
        return [e.name for e in os.scandir(split_root) if e.is_dir() and not e.name.startswith(".")]

    @staticmethod
    def _has_image(folder: Path) -> bool:
        if not folder.is_dir():
            return False
        with os.scandir(folder) as entries:
            return any(e.is_file() and Path(e.name).suffix.lower() in IMAGE_EXTENSIONS for e in entries)

    def _image_files(self, split: str, folder: str) -> list[str]:
        path = self._split_roots[split] / folder
        if not path.is_dir():
            return []
        # Names only (not images) are listed, one class at a time, to give a stable order.
        return sorted(
            e.name for e in os.scandir(path) if e.is_file() and Path(e.name).suffix.lower() in IMAGE_EXTENSIONS
        )

    def iter_examples(self, split: str, holdout_classes: Collection[int | str] | None = None) -> Iterator[Example]:
        """Stream decoded PIL images with ids "<split>/<class folder>/<file>"; unreadable files are skipped."""
        self._check_split(split)
        holdout = self.holdout_labels(holdout_classes)
        for label, folder in enumerate(self._folders):
            if label in holdout:
                continue
            for filename in self._image_files(split, folder):
                image_id = f"{split}/{folder}/{filename}"
                image, reason = decode_image(self._split_roots[split] / folder / filename)
                if image is None:
                    self._skip(image_id, reason)
                    continue
                yield Example(image, label, image_id)

    def num_examples(self, split: str) -> int:
        """The number of image files of `split` (unreadable ones included)."""
        self._check_split(split)
        if split not in self._counts:
            self._counts[split] = sum(len(self._image_files(split, f)) for f in self._folders)
        return self._counts[split]


class HFDatasetSource(LabelSource):
    """A `datasets` dataset (hub name, `save_to_disk` folder or data folder) with a ClassLabel label column."""

    def __init__(
        self,
        path: str | os.PathLike,
        image_column: str = "image",
        label_column: str = "label",
        split: str | None = None,
        streaming: bool = False,
        id_column: str | None = None,
        name: str | None = None,
        load_kwargs: dict[str, Any] | None = None,
    ) -> None:
        import datasets

        super().__init__()
        self.path, self.image_column, self.label_column = str(path), image_column, label_column
        self.id_column = id_column
        self.name = name or (Path(path).name if Path(path).exists() else str(path))
        loaded = self._open(datasets, split, streaming, load_kwargs or {})
        if isinstance(loaded, (datasets.DatasetDict, datasets.IterableDatasetDict)):
            self._splits = dict(loaded)
        else:
            self._splits = {split or "train": loaded}
        self.splits = tuple(self._splits)
        if not self.splits:
            raise ValueError(f"{self.name}: the dataset has no splits")
        first = next(iter(self._splits.values()))
        features = first.features
        if features is None:
            raise ValueError(
                f"{self.name}: the dataset does not declare its features; cannot find a ClassLabel column"
            )
        for column in (label_column, image_column) + ((id_column,) if id_column else ()):
            if column not in features:
                raise ValueError(f"{self.name}: column {column!r} is missing; the dataset has {list(features)}")
        label_feature = features[label_column]
        if not isinstance(label_feature, datasets.ClassLabel):
            raise ValueError(
                f"{self.name}: label column {label_column!r} is {type(label_feature).__name__}"
                f"({getattr(label_feature, 'dtype', '?')}), not a ClassLabel: class names are needed for prompts "
                "(cast it with dataset.cast_column(column, ClassLabel(names=[...])))"
            )
        self.classes = [class_from_name(label, n, self.name) for label, n in enumerate(label_feature.names)]
        validate_classes(self.classes, self.name)
        # Decode images ourselves so that one corrupt image is skipped instead of ending the iteration.
        if isinstance(features[image_column], datasets.Image):
            undecoded = datasets.Image(decode=False)
            self._splits = {s: d.cast_column(image_column, undecoded) for s, d in self._splits.items()}
        for split_name in self.splits:
            if self.num_examples(split_name) == 0:
                raise ValueError(f"{self.name}: split {split_name!r} has no examples")

    def _open(self, datasets: Any, split: str | None, streaming: bool, load_kwargs: dict) -> Any:
        local = Path(self.path)
        markers = ("dataset_dict.json", "dataset_info.json", "state.json")  # what save_to_disk writes
        saved = local.is_dir() and any((local / f).is_file() for f in markers)
        if saved:
            loaded = datasets.load_from_disk(str(local))
            if split is not None:
                if not isinstance(loaded, datasets.DatasetDict) or split not in loaded:
                    have = list(loaded) if isinstance(loaded, datasets.DatasetDict) else "one unnamed split"
                    raise ValueError(f"{self.name}: split {split!r} is not in the saved dataset ({have})")
                loaded = loaded[split]
            if streaming:
                if isinstance(loaded, datasets.DatasetDict):
                    return datasets.IterableDatasetDict({k: v.to_iterable_dataset() for k, v in loaded.items()})
                return loaded.to_iterable_dataset()
            return loaded  # memory-mapped Arrow: nothing is read until iterated
        return datasets.load_dataset(self.path, split=split, streaming=streaming, **load_kwargs)

    def iter_examples(self, split: str, holdout_classes: Collection[int | str] | None = None) -> Iterator[Example]:
        """Stream decoded PIL images; ids are `id_column` values or "<split>/<row index>"."""
        self._check_split(split)
        holdout = self.holdout_labels(holdout_classes)
        labels = {cls.label for cls in self.classes}
        for index, row in enumerate(self._splits[split]):
            image_id = str(row[self.id_column]) if self.id_column else f"{split}/{index}"
            label = row[self.label_column]
            if label not in labels:  # -1 is the datasets convention for "unlabelled"
                self._skip(
                    image_id,
                    "unlabelled (label -1)"
                    if label in (-1, None)
                    else f"label {label!r} has no class name (the ClassLabel has {len(self.classes)} names)",
                )
                continue
            if label in holdout:
                continue
            image, reason = self._decode(row[self.image_column])
            if image is None:
                self._skip(image_id, reason)
                continue
            yield Example(image, label, image_id)

    @staticmethod
    def _decode(value: Any) -> tuple[Any, str | None]:
        if value is None:
            return None, "no image"
        if isinstance(value, dict):  # an undecoded datasets.Image: {"bytes": ..., "path": ...}
            if value.get("bytes") is not None:
                return decode_image(value["bytes"])
            if value.get("path"):
                return decode_image(value["path"])
            return None, "no image bytes or path"
        if isinstance(value, (bytes, bytearray)):
            return decode_image(value)
        return value, None  # arrays and decoded images of non-Image columns are passed through

    def num_examples(self, split: str) -> int | None:
        """The row count of `split`; None for a streamed dataset whose metadata does not say."""
        self._check_split(split)
        data = self._splits[split]
        try:
            return len(data)
        except TypeError:
            info = getattr(data, "info", None)
            splits = getattr(info, "splits", None) or {}
            return splits[split].num_examples if split in splits else None


_SOURCES: dict[str, type[LabelSource]] = {
    "fashion-mnist": FashionMNISTSource,
    "imagefolder": ImageFolderSource,
    "hf": HFDatasetSource,
}


def build_source(spec: dict) -> LabelSource:
    """A source from a config dict: {"type": "fashion-mnist" | "imagefolder" | "hf", ...constructor arguments}."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(f"source spec {spec!r} needs a 'type' ({sorted(_SOURCES)})")
    kind = spec["type"]
    if kind not in _SOURCES:
        raise ValueError(f"unknown source type {kind!r}; known types: {sorted(_SOURCES)}")
    cls = _SOURCES[kind]
    params = inspect.signature(cls.__init__).parameters
    allowed = [p for p in params if p != "self"]
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    unknown = [k for k in kwargs if k not in allowed]
    if unknown:
        raise ValueError(f"source type {kind!r}: unknown key(s) {unknown}; allowed: {allowed}")
    missing = [p for p in allowed if params[p].default is inspect.Parameter.empty and p not in kwargs]
    if missing:
        raise ValueError(f"source type {kind!r}: missing key(s) {missing}")
    return cls(**kwargs)

"""Evaluation data: Karpathy-split JSON (COCO/Flickr30K), a `datasets` dataset with image + caption(s), the wvlp corpus.

Every loader returns an `EvalData`: images (lazy: decoded on access), texts, and the group ids that say which texts
answer which image (see `wvlp.evaluation.retrieval`). Class labels are there when the data has them (zero-shot, probe).
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from PIL import Image

CAPTION_COLUMNS = ("captions", "caption", "sentences", "text", "raw")


class PathImages(Sequence):
    """Images on disk, opened (as RGB) only when indexed."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: int | slice) -> Any:
        if isinstance(item, slice):
            return [self[i] for i in range(*item.indices(len(self)))]
        with Image.open(self.paths[item]) as image:
            return image.convert("RGB")


class ColumnImages(Sequence):
    """One image column of a `datasets.Dataset`, decoded only when indexed (a large split is never held in memory)."""

    def __init__(self, dataset: datasets.Dataset, column: str = "image"):
        self.dataset, self.column = dataset, column

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: int | slice) -> Any:
        if isinstance(item, slice):
            return self.dataset[item][self.column]
        return self.dataset[int(item)][self.column]


class MissingSplitError(ValueError):
    """The data has no split of the requested name."""


@dataclass
class EvalData:
    """Images, texts and the group ids that pair them; `labels` (per image) when the data is labelled."""

    name: str
    split: str
    images: Sequence[Any]
    texts: list[str]
    image_groups: np.ndarray
    text_groups: np.ndarray
    retrieval_level: str = "caption"  # "caption": groups are image indices; "class": groups are labels
    labels: np.ndarray | None = None
    label_names: list[str] | None = None
    text_labels: np.ndarray | None = None
    train_images: Sequence[Any] | None = None  # labelled train split, for the linear probe
    train_labels: np.ndarray | None = None
    source: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.image_groups) != len(self.images) or len(self.text_groups) != len(self.texts):
            raise ValueError(
                f"{self.name}: {len(self.images)} images / {len(self.image_groups)} image groups and "
                f"{len(self.texts)} texts / {len(self.text_groups)} text groups must match"
            )
        if self.labels is not None and len(self.labels) != len(self.images):
            raise ValueError(f"{self.name}: {len(self.labels)} labels for {len(self.images)} images")


def load_karpathy(
    path: str | Path,
    image_root: str | Path,
    split: str = "test",
    max_images: int | None = None,
    name: str | None = None,
) -> EvalData:
    """Karpathy-split JSON: `images[]` with `filename`, `split`, `sentences[].raw` and optional `filepath` (COCO)."""
    path, image_root = Path(path), Path(image_root)
    if not path.is_file():
        raise FileNotFoundError(f"Karpathy JSON {path} does not exist")
    if not image_root.is_dir():
        raise FileNotFoundError(f"image root {image_root} is not a folder")
    entries = json.loads(path.read_text()).get("images")
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a top-level 'images' list (Karpathy split layout)")
    # restval is COCO's extra training data; "train" in the argument asks for both
    wanted = {"train", "restval"} if split == "train" else {split}
    paths, texts, text_groups = [], [], []
    for number, entry in enumerate(entries):
        missing = [key for key in ("filename", "split", "sentences") if key not in entry]
        if missing:
            raise ValueError(f"{path}: images[{number}] lacks {missing}")
        if entry["split"] not in wanted:
            continue
        if max_images is not None and len(paths) >= max_images:
            break
        file = image_root / entry.get("filepath", "") / entry["filename"]
        if not file.is_file():
            raise FileNotFoundError(f"{path}: images[{number}] is {file}, which does not exist (check --image-root)")
        captions = [s["raw"].strip() for s in entry["sentences"] if s.get("raw", "").strip()]
        if not captions:
            raise ValueError(f"{path}: images[{number}] ({entry['filename']}) has no non-empty sentences[].raw")
        texts += captions
        text_groups += [len(paths)] * len(captions)
        paths.append(file)
    if not paths:
        splits = sorted({e.get("split") for e in entries})
        raise MissingSplitError(f"{path}: no image in split {split!r} (the file has splits {splits})")
    return EvalData(
        name or path.stem,
        split,
        PathImages(paths),
        texts,
        np.arange(len(paths)),
        np.asarray(text_groups, np.int64),
        source=str(path),
    )


def _caption_column(dataset: datasets.Dataset, column: str | None) -> str:
    if column is not None:
        if column not in dataset.column_names:
            raise ValueError(f"caption column {column!r} not in the dataset's columns {dataset.column_names}")
        return column
    for candidate in CAPTION_COLUMNS:
        if candidate in dataset.column_names:
            return candidate
    raise ValueError(f"no caption column among {dataset.column_names}: name one of {CAPTION_COLUMNS} or pass it")


def load_caption_dataset(
    dataset: datasets.Dataset | datasets.DatasetDict | str | Path,
    split: str = "test",
    image_column: str = "image",
    caption_column: str | None = None,
    max_images: int | None = None,
    name: str | None = None,
) -> EvalData:
    """A `datasets` dataset (object or `save_to_disk` folder) with an image column and a caption or captions column."""
    source = str(dataset) if isinstance(dataset, (str, Path)) else ""
    if isinstance(dataset, (str, Path)):
        if not Path(dataset).is_dir():
            raise FileNotFoundError(f"dataset folder {dataset} does not exist")
        dataset = datasets.load_from_disk(str(dataset))
    if isinstance(dataset, datasets.DatasetDict):
        if split not in dataset:
            raise MissingSplitError(f"split {split!r} not in the dataset (it has {list(dataset)})")
        dataset = dataset[split]
    if image_column not in dataset.column_names:
        raise ValueError(f"image column {image_column!r} not in the dataset's columns {dataset.column_names}")
    if max_images is not None:
        dataset = dataset.select(range(min(max_images, len(dataset))))
    column = _caption_column(dataset, caption_column)
    texts, text_groups = [], []
    for index, cell in enumerate(dataset[column]):
        captions = [cell] if isinstance(cell, str) else list(cell or [])
        captions = [c.strip() for c in captions if isinstance(c, str) and c.strip()]
        if not captions:
            raise ValueError(f"row {index} of the dataset has no caption in column {column!r}")
        texts += captions
        text_groups += [index] * len(captions)
    labels, label_names = None, None
    label_feature = dataset.features.get("label")
    if isinstance(label_feature, datasets.ClassLabel):
        labels, label_names = np.asarray(dataset["label"], np.int64), list(label_feature.names)
    return EvalData(
        name or (Path(source).name if source else "dataset"),
        split,
        ColumnImages(dataset, image_column),
        texts,
        np.arange(len(dataset)),
        np.asarray(text_groups, np.int64),
        labels=labels,
        label_names=label_names,
        source=source,
    )


def is_corpus_folder(path: str | Path) -> bool:
    """Whether `path` is a corpus written by `wvlp describe` (data/images and data/descriptions parquet configs)."""
    return (Path(path) / "data" / "images").is_dir() and (Path(path) / "data" / "descriptions").is_dir()


def load_corpus(
    folder: str | Path,
    split: str = "test",
    max_images: int | None = None,
    max_train_images: int | None = 10_000,
    name: str | None = None,
) -> EvalData:
    """The wvlp corpus: `images/<split>` classified and queried against the held-out `descriptions/<split>` (class level).

    With `max_images`, the first images of the split are kept and texts of classes left without images are dropped
    (a text query needs at least one correct image). The train split (first `max_train_images`) feeds the probe.
    """
    folder = Path(folder)
    if not is_corpus_folder(folder):
        raise FileNotFoundError(f"{folder} is not a wvlp corpus folder (no data/images and data/descriptions)")
    images = datasets.load_dataset(str(folder), "images")
    descriptions = datasets.load_dataset(str(folder), "descriptions")
    for config, splits in (("images", images), ("descriptions", descriptions)):
        if split not in splits:
            raise MissingSplitError(f"{folder}: the {config} config has no split {split!r} (it has {list(splits)})")
    test = images[split]
    if max_images is not None:
        test = test.select(range(min(max_images, len(test))))
    label_names = list(test.features["label"].names)
    labels = np.asarray(test["label"], np.int64)
    texts_ds = descriptions[split].filter(lambda label: label in set(labels.tolist()), input_columns="label")
    text_labels = np.asarray(texts_ds["label"], np.int64)
    train_images, train_labels = None, None
    if "train" in images and split != "train":
        train = images["train"]
        if max_train_images is not None:
            train = train.shuffle(seed=0).select(range(min(max_train_images, len(train))))
        train_images, train_labels = ColumnImages(train), np.asarray(train["label"], np.int64)
    # image ids are "<source name>/<split>/<index>": the source name (e.g. fashion-mnist) names the data
    source_name = str(test.data.column("image_id")[0].as_py()).split("/")[0] if len(test) else folder.name
    return EvalData(
        name or source_name,
        split,
        ColumnImages(test),
        list(texts_ds["text"]),
        labels,
        text_labels,
        retrieval_level="class",
        labels=labels,
        label_names=label_names,
        text_labels=text_labels,
        train_images=train_images,
        train_labels=train_labels,
        source=str(folder),
    )


def load_eval_data(
    data: str | Path,
    split: str = "test",
    image_root: str | Path | None = None,
    max_images: int | None = None,
    max_train_images: int | None = 10_000,
) -> EvalData:
    """Dispatches on `data`: a corpus folder, a Karpathy JSON file (needs `image_root`) or a `save_to_disk` folder."""
    path = Path(data)
    if path.is_file() and path.suffix == ".json":
        if image_root is None:
            raise ValueError(f"{path} is a Karpathy-split JSON: pass the folder of its images as image_root")
        return load_karpathy(path, image_root, split, max_images)
    if is_corpus_folder(path):
        return load_corpus(path, split, max_images, max_train_images)
    if path.is_dir():
        return load_caption_dataset(path, split, max_images=max_images)
    raise FileNotFoundError(
        f"data={str(data)!r} is neither a corpus folder, a Karpathy .json file nor a dataset folder"
    )

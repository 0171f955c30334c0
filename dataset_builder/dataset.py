"""Writes the corpus as a code-free `datasets` repository: parquet shards with embedded images + a dataset card.

Three configs, loadable with `load_dataset(folder, name)` and no project code:
- `images` (train/test): one row per image — image, label (ClassLabel), class_id, image_id.
- `descriptions` (train/test): one row per cleaned description, with provenance, retrieved knowledge and the
  frozen text teacher's embedding. Test holds out a fixed share of every category's descriptions.
- `raw_generations` (train): every LLM response as generated, with the reason it was dropped (if it was).

Why descriptions are their own table and not a column of the image rows: every image of a category shares the
category's pool, so a per-image copy (or one row per image-description pair) multiplies the text by the number of
images. The distillation collator samples one description of the image's category per step instead.
"""

import io
import itertools
import json
import math
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from huggingface_hub import DatasetCard, DatasetCardData
from PIL import Image

from .sources import ClassInfo, LabelSource

PROVENANCE_FIELDS = {
    "description_id": datasets.Value("string"),
    "class_id": datasets.Value("string"),
    "class_name": datasets.Value("string"),
    "prompt_id": datasets.Value("string"),
    "template": datasets.Value("string"),
    "sample_index": datasets.Value("int32"),
    "llm": datasets.Value("string"),
    "llm_revision": datasets.Value("string"),
    "decoding": datasets.Value("string"),  # JSON: max_new_tokens, temperature, top_p
    "seed": datasets.Value("int64"),
    "created_at": datasets.Value("string"),
}


def features_for(classes: Sequence[ClassInfo], teacher_dim: int) -> dict[str, datasets.Features]:
    """The features of each config."""
    label = datasets.ClassLabel(names=[c.name for c in sorted(classes, key=lambda c: c.label)])
    return {
        "images": datasets.Features(
            {"image": datasets.Image(), "label": label, "class_id": datasets.Value("string"), "image_id": datasets.Value("string")}
        ),
        "descriptions": datasets.Features(
            {
                **PROVENANCE_FIELDS,
                "label": label,
                "text": datasets.Value("string"),
                "num_tokens": datasets.Value("int32"),
                "knowledge_ids": datasets.List(datasets.Value("string")),
                "knowledge_texts": datasets.List(datasets.Value("string")),
                "knowledge_scores": datasets.List(datasets.Value("float32")),
                "teacher_embedding": datasets.List(datasets.Value("float16"), length=teacher_dim),
            }
        ),
        "raw_generations": datasets.Features(
            {
                **PROVENANCE_FIELDS,
                "label": label,
                "raw_text": datasets.Value("string"),
                "error": datasets.Value("string"),
                "drop_reason": datasets.Value("string"),
            }
        ),
    }


def encode_png(image: Any) -> bytes:
    """PNG bytes of a PIL image / array / path (the parquet shards embed the bytes, never paths)."""
    if isinstance(image, (str, Path)):
        return Path(image).read_bytes()
    if isinstance(image, bytes):
        return image
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def is_heldout(description_id: str, fraction: float) -> bool:
    """Deterministic held-out assignment of a description (same answer in every run)."""
    import hashlib

    digest = int.from_bytes(hashlib.blake2b(description_id.encode(), digest_size=8).digest(), "little")
    return digest / 2**64 < fraction


def _image_rows(source: LabelSource, split: str, max_images: int | None = None) -> Iterator[dict]:
    by_label = {c.label: c for c in source.classes}
    for example in itertools.islice(source.iter_examples(split), max_images):
        yield {
            "image": {"bytes": encode_png(example.image), "path": None},
            "label": example.label,
            "class_id": by_label[example.label].class_id,
            "image_id": example.image_id,
        }


def _write_shards(dataset: datasets.Dataset, folder: Path, split: str, max_rows_per_shard: int) -> None:
    """Writes `split` as `<split>-0000i-of-0000n.parquet` shards."""
    folder.mkdir(parents=True, exist_ok=True)
    shards = max(1, math.ceil(len(dataset) / max_rows_per_shard))
    for i in range(shards):
        part = dataset.shard(shards, i, contiguous=True)
        part.to_parquet(str(folder / f"{split}-{i:05d}-of-{shards:05d}.parquet"))


def write_corpus(
    output_dir: str | Path,
    source: LabelSource,
    descriptions: list[dict],
    raw_generations: list[dict],
    teacher_dim: int,
    card_text: str,
    card_metadata: dict[str, Any],
    heldout_fraction: float = 0.2,
    image_splits: Iterable[str] | None = None,
    max_images_per_split: int | None = None,
    max_rows_per_shard: int = 20_000,
    num_proc: int | None = None,
    cache_dir: str | None = None,
) -> Path:
    """Writes the three configs and the card into `output_dir` (replaced atomically: written aside, then renamed)."""
    output_dir = Path(output_dir)
    staging = output_dir.with_name(output_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    features = features_for(source.classes, teacher_dim)
    infos, configs = {}, {}

    def add(config: str, split: str, dataset: datasets.Dataset) -> None:
        _write_shards(dataset, staging / "data" / config, split, max_rows_per_shard)
        configs.setdefault(config, []).append({"split": split, "path": f"data/{config}/{split}-*"})
        infos.setdefault(config, {})[split] = (len(dataset), dataset.data.nbytes)

    for split in image_splits or source.splits:
        # from_generator streams to an Arrow cache on disk: a large source is never held in memory.
        images = datasets.Dataset.from_generator(
            _image_rows,
            gen_kwargs={"source": source, "split": split, "max_images": max_images_per_split},
            features=features["images"],
            cache_dir=cache_dir,
            num_proc=num_proc,
        )
        add("images", split, images)
    description_rows = [_description_row(d) for d in descriptions]
    for split, heldout in (("train", False), ("test", True)):
        rows = [r for r in description_rows if is_heldout(r["description_id"], heldout_fraction) == heldout]
        add("descriptions", split, _from_rows(rows, features["descriptions"]))
    add("raw_generations", "train", _from_rows([_raw_row(r) for r in raw_generations], features["raw_generations"]))

    card = dataset_card(configs, features, infos, card_text, card_metadata)
    card.save(str(staging / "README.md"))
    if output_dir.exists():
        shutil.rmtree(output_dir)
    staging.rename(output_dir)
    return output_dir


def _from_rows(rows: list[dict], features: datasets.Features) -> datasets.Dataset:
    columns = {name: [row[name] for row in rows] for name in features}
    return datasets.Dataset.from_dict(columns, features=features)


def _provenance(record: dict) -> dict:
    row = {name: record.get(name) for name in PROVENANCE_FIELDS}
    row["decoding"] = json.dumps(record.get("decoding") or {}, sort_keys=True)
    return row


def _description_row(record: dict) -> dict:
    knowledge = record.get("knowledge") or []
    return {
        **_provenance(record),
        "label": record["label"],
        "text": record["text"],
        "num_tokens": record["num_tokens"],
        "knowledge_ids": [k["id"] for k in knowledge],
        "knowledge_texts": [k["text"] for k in knowledge],
        "knowledge_scores": [float(k["score"]) for k in knowledge],
        "teacher_embedding": np.asarray(record["teacher_embedding"], dtype=np.float16),
    }


def _raw_row(record: dict) -> dict:
    return {
        **_provenance(record),
        "label": record["label"],
        "raw_text": record.get("raw_text"),
        "error": record.get("error"),
        "drop_reason": record.get("drop_reason"),
    }


def dataset_card(
    configs: dict[str, list[dict]],
    features: dict[str, datasets.Features],
    infos: dict[str, dict[str, tuple[int, int]]],  # config -> split -> (rows, bytes)
    card_text: str,
    metadata: dict[str, Any],
) -> DatasetCard:
    """The card: YAML (configs with data files, features per config, license, tasks) + the prose `card_text`."""
    data = DatasetCardData(**metadata)
    data["configs"] = [
        {"config_name": name, "data_files": files, **({"default": True} if name == "images" else {})}
        for name, files in configs.items()
    ]
    data["dataset_info"] = [
        {
            "config_name": name,
            "features": features[name]._to_yaml_list(),
            "splits": [
                {"name": split, "num_bytes": nbytes, "num_examples": count}
                for split, (count, nbytes) in infos[name].items()
            ],
        }
        for name in configs
    ]
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{card_text}")

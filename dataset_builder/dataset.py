"""Writes the corpus as a code-free `datasets` repository: parquet shards with embedded images + a dataset card.

Three configs, loadable with `load_dataset(folder, name)` and no project code:
- `images` (train/test): one row per image — image, label (ClassLabel), class_id, image_id.
- `descriptions` (train/test): one row per cleaned description, with provenance, retrieved knowledge and the
  frozen text teacher's embedding. Test holds out a fixed share of every category's descriptions.
- `raw_generations` (train): every LLM response as generated, with the reason it was dropped (if it was).
- `queries` (cross_llm), only with a query describer: descriptions by another LLM, for evaluation only.

Why descriptions are their own table and not a column of the image rows: every image of a category shares the
category's pool, so a per-image copy (or one row per image-description pair) multiplies the text by the number of
images. The distillation collator samples one description of the image's category per step instead.
"""

import hashlib
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

from wvlp.common.safe_io import CORPUS, STAGING, check_writable, claim_dir, remove_dir, replace_dir
from wvlp.data.clean import write_stats
from wvlp.data.sources import ClassInfo, LabelSource

PROVENANCE_FIELDS = {
    "description_id": datasets.Value("string"),
    "class_id": datasets.Value("string"),
    "class_name": datasets.Value("string"),
    "prompt_id": datasets.Value("string"),
    "template": datasets.Value("string"),
    "sample_index": datasets.Value("int32"),
    "llm": datasets.Value("string"),
    "llm_revision": datasets.Value("string"),
    "llm_server": datasets.Value(
        "string"
    ),  # JSON: the server's /v1/models entry of the model (null: local or unknown)
    "prompting": datasets.Value("string"),  # chat | completion (None in records written before it was recorded)
    "template_hash": datasets.Value("string"),
    "decoding": datasets.Value("string"),  # JSON: max_new_tokens and every sampling parameter sent
    "seed": datasets.Value("int64"),
    "created_at": datasets.Value("string"),
}


def features_for(classes: Sequence[ClassInfo], teacher_dim: int) -> dict[str, datasets.Features]:
    """The features of each config."""
    label = datasets.ClassLabel(names=[c.name for c in sorted(classes, key=lambda c: c.label)])
    return {
        "images": datasets.Features(
            {
                "image": datasets.Image(),
                "label": label,
                "class_id": datasets.Value("string"),
                "image_id": datasets.Value("string"),
            }
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
        "queries": datasets.Features({**PROVENANCE_FIELDS, "label": label, "text": datasets.Value("string")}),
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


# Modes a PNG stores as they are; anything else (CMYK, YCbCr, 32-bit float "F", 16-bit big-endian, ...) is converted
# the way the model's image processor would convert it, so training sees the same pixels either way.
_PNG_MODES = frozenset({"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"})


def encode_png(image: Any) -> bytes:
    """PNG bytes of a PIL image / array / path (the parquet shards embed the bytes, never paths)."""
    if isinstance(image, (str, Path)):
        return Path(image).read_bytes()
    if isinstance(image, bytes):
        return image
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if image.mode not in _PNG_MODES:
        from wvlp.modeling import WVLPImageProcessor

        image = WVLPImageProcessor._from_pil(image, f"a {image.mode} image", do_convert_rgb=True)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _heldout_digest(description_id: str) -> float:
    digest = int.from_bytes(hashlib.blake2b(description_id.encode(), digest_size=8).digest(), "little")
    return digest / 2**64


def is_heldout(description_id: str, fraction: float) -> bool:
    """Deterministic held-out assignment of a description (same answer in every run)."""
    return _heldout_digest(description_id) < fraction


def split_heldout(rows: Sequence[dict], fraction: float) -> list[bool]:
    """Per row, whether it is held out: `is_heldout`, then per class at least one row on each side when it can.

    A class with two or more descriptions but none drawn for test gives its lowest-digest one to test, and one with
    all drawn for test keeps its highest-digest one for training; a class with one description trains on it.
    Raises ValueError when no description at all is held out (the `descriptions` config would have no test split).
    """
    if not 0 < fraction < 1:
        raise ValueError(
            f"heldout_fraction={fraction!r} must be in (0, 1): the corpus needs train and test descriptions"
        )
    digests = [_heldout_digest(r["description_id"]) for r in rows]
    heldout = [d < fraction for d in digests]
    by_class: dict[Any, list[int]] = {}
    for i, row in enumerate(rows):
        by_class.setdefault(row["class_id"], []).append(i)
    for members in by_class.values():
        test = [i for i in members if heldout[i]]
        if len(members) == 1:
            heldout[members[0]] = False
        elif not test:
            heldout[min(members, key=digests.__getitem__)] = True
        elif len(test) == len(members):
            heldout[max(members, key=digests.__getitem__)] = False
    if rows and not any(heldout):
        raise ValueError(
            f"no description is held out for test: every class has fewer than two descriptions "
            f"({len(rows)} in {len(by_class)} classes); generate more samples per prompt"
        )
    return heldout


def _image_rows(source: LabelSource, split: str, max_images: int | None, skip_log: str) -> Iterator[dict]:
    by_label = {c.label: c for c in source.classes}
    for example in itertools.islice(source.iter_examples(split), max_images):
        try:
            png = encode_png(example.image)
        except (OSError, ValueError) as err:
            source._skip(example.image_id, f"cannot be stored as PNG: {err}")
            continue
        yield {
            "image": {"bytes": png, "path": None},
            "label": example.label,
            "class_id": by_label[example.label].class_id,
            "image_id": example.image_id,
        }
    # The generator may run in a worker process (num_proc): its skips reach the parent through this file.
    with open(skip_log, "a", encoding="utf-8") as log:
        for image_id, reason in source.skipped:
            log.write(json.dumps({"image_id": image_id, "reason": reason}) + "\n")


def _write_shards(dataset: datasets.Dataset, folder: Path, split: str, max_rows_per_shard: int) -> None:
    """Writes `split` as `<split>-0000i-of-0000n.parquet` shards."""
    folder.mkdir(parents=True, exist_ok=True)
    shards = max(1, math.ceil(len(dataset) / max_rows_per_shard))
    for i in range(shards):
        part = dataset.shard(shards, i, contiguous=True)
        part.to_parquet(str(folder / f"{split}-{i:05d}-of-{shards:05d}.parquet"))


def _read_skips(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    skips = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        skips.setdefault(row["image_id"], row)
    return list(skips.values())


def skipped_section(skipped: Sequence[dict], shown: int = 50) -> str:
    """The card's list of images left out of the corpus, with the reason of each (the full list is in stats.json)."""
    if not skipped:
        return "## Skipped images\nNone: every image of the source was read and stored.\n"
    lines = [f"## Skipped images\n{len(skipped)} image(s) could not be used and are not in the corpus:"]
    lines += [f"- `{s['image_id']}`: {s['reason']}" for s in skipped[:shown]]
    if len(skipped) > shown:
        lines.append(f"- ... and {len(skipped) - shown} more (all are listed in stats.json, `skipped_images`).")
    return "\n".join(lines) + "\n"


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
    stats: dict | None = None,
    queries: list[dict] | None = None,
) -> Path:
    """Writes the three configs (four with `queries`), the card and `stats.json` into `output_dir`, atomically: written aside, then renamed.

    `output_dir` must be absent, empty or a corpus this project wrote (anything else is refused, untouched). The
    card and `stats["skipped_images"]` list every image the source could not read or that could not be stored.
    """
    output_dir = Path(output_dir)
    check_writable(output_dir, CORPUS, "output")
    staging = output_dir.with_name(output_dir.name + ".partial")
    remove_dir(staging, STAGING, "the staging folder of output")
    claim_dir(staging, STAGING, "the staging folder of output")
    features = features_for(source.classes, teacher_dim)
    infos, configs = {}, {}

    def add(config: str, split: str, dataset: datasets.Dataset) -> None:
        _write_shards(dataset, staging / "data" / config, split, max_rows_per_shard)
        configs.setdefault(config, []).append({"split": split, "path": f"data/{config}/{split}-*"})
        infos.setdefault(config, {})[split] = (len(dataset), dataset.data.nbytes)

    description_rows = [_description_row(d) for d in descriptions]
    heldout = split_heldout(description_rows, heldout_fraction)  # before the images: fail before the long part
    work = staging / ".work"  # a fresh Arrow cache per run: the datasets cache key does not see file contents
    skip_log = work / "skipped.jsonl"
    work.mkdir()
    for split in image_splits or source.splits:
        # from_generator streams to an Arrow cache on disk: a large source is never held in memory.
        images = datasets.Dataset.from_generator(
            _image_rows,
            gen_kwargs={
                "source": source,
                "split": split,
                "max_images": max_images_per_split,
                "skip_log": str(skip_log),
            },
            features=features["images"],
            cache_dir=str(work / "cache"),
            num_proc=num_proc,
        )
        add("images", split, images)
        del images  # the shards are written; the Arrow cache under .work goes below
    skipped = _read_skips(skip_log)
    for split, wanted in (("train", False), ("test", True)):
        rows = [r for r, h in zip(description_rows, heldout) if h == wanted]
        add("descriptions", split, _from_rows(rows, features["descriptions"]))
    add("raw_generations", "train", _from_rows([_raw_row(r) for r in raw_generations], features["raw_generations"]))
    if queries:
        rows = [{**_provenance(r), "label": r["label"], "text": r["text"]} for r in queries]
        add("queries", "cross_llm", _from_rows(rows, features["queries"]))

    card = dataset_card(
        configs, features, infos, card_text.rstrip("\n") + "\n\n" + skipped_section(skipped), card_metadata
    )
    card.save(str(staging / "README.md"))
    stats = {**(stats or {}), "skipped_images": skipped}
    write_stats(stats, staging / "stats.json")
    shutil.rmtree(work)
    return replace_dir(staging, output_dir, CORPUS, "output")


def _from_rows(rows: list[dict], features: datasets.Features) -> datasets.Dataset:
    columns = {name: [row[name] for row in rows] for name in features}
    return datasets.Dataset.from_dict(columns, features=features)


def _provenance(record: dict) -> dict:
    row = {name: record.get(name) for name in PROVENANCE_FIELDS}
    row["decoding"] = json.dumps(record.get("decoding") or {}, sort_keys=True)
    server = record.get("llm_server")
    row["llm_server"] = None if server is None else json.dumps(server, sort_keys=True, default=str)
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

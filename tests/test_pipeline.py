"""`wvlp describe` end to end through a real loopback LLM server, and the corpus's code-free round trip."""

import hashlib
import json
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow.parquet as pq
import pytest
from datasets import Features
from huggingface_hub import DatasetCard

from wvlp.data.pipeline import DescribeConfig, run_describe
from wvlp.data.query_sets import cupl_queries
from wvlp.data.sources import FashionMNISTSource

from tests.openai_server import OpenAIStubServer, describing_reply

KNOWLEDGE = [
    "a shirt is a garment worn on the upper body with sleeves and a collar",
    "trousers cover each leg separately from the waist to the ankle",
    "a sandal is a shoe made of a sole held to the foot by straps",
    "sneakers are canvas shoes with rubber soles worn for sport",
    "a handbag is carried by a strap or handle and holds personal items",
    "a coat is worn outdoors over other clothes to keep warm",
    "a dress is a one-piece garment with a skirt and a bodice",
    "boots cover the foot and the ankle and are made of leather",
    "a pullover is a knitted sweater put on over the head",
]


CUPL_QUERIES = [
    row["text"] for row in cupl_queries([c.name for c in sorted(FashionMNISTSource().classes, key=lambda c: c.label)])
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("describe")
    corpus_file = tmp / "knowledge.txt"
    # Two CuPL query sentences among the knowledge: `holdout_query_sets` must keep them out of the index.
    corpus_file.write_text("\n".join(KNOWLEDGE + [CUPL_QUERIES[0], CUPL_QUERIES[-1]]))
    with OpenAIStubServer(latency_s=0.005, reply=describing_reply) as server:
        config = DescribeConfig(
            output=str(tmp / "corpus"),
            llm={"type": "server", "base_url": server.base_url, "concurrency": 8},
            samples_per_prompt=2,
            max_images_per_split=30,
            knowledge={"sources": [{"text_file": str(corpus_file)}], "k": 2, "holdout_query_sets": ["cupl"]},
            cleaning={"min_similarity": 0.0},
        )
        folder = run_describe(config)
        requests = len(server.requests)
    return folder, requests, tmp


def rows_as_written(folder, config: str, split: str) -> list[dict]:
    """The rows straight from the parquet shards, image bytes replaced by their hash."""
    rows = []
    for shard in sorted((folder / "data" / config).glob(f"{split}-*.parquet")):
        rows.extend(pq.read_table(shard).to_pylist())
    return [normalise(row) for row in rows]


def normalise(row: dict) -> dict:
    row = dict(row)
    if "image" in row:
        row["image"] = hashlib.sha256(row["image"]["bytes"]).hexdigest()
    if "teacher_embedding" in row:
        row["teacher_embedding"] = [round(float(x), 3) for x in row["teacher_embedding"]]
    if "knowledge_scores" in row:
        row["knowledge_scores"] = [round(float(x), 5) for x in row["knowledge_scores"]]
    return row


FRESH = textwrap.dedent("""
    import hashlib, json, sys
    import datasets
    folder, out = sys.argv[1:]
    result = {}
    for config in ("images", "descriptions", "raw_generations"):
        for split, ds in datasets.load_dataset(folder, config).items():
            rows = ds.cast_column("image", datasets.Image(decode=False)) if config == "images" else ds
            result[f"{config}/{split}"] = {"features": ds.features.to_dict(), "rows": [
                {**r, **({"image": hashlib.sha256(r["image"]["bytes"]).hexdigest()} if config == "images" else {}),
                 **({"teacher_embedding": [round(float(x), 3) for x in r["teacher_embedding"]],
                     "knowledge_scores": [round(float(x), 5) for x in r["knowledge_scores"]]}
                    if config == "descriptions" else {})} for r in rows]}
    assert not [m for m in sys.modules if m.startswith(("dataset_builder", "modeling_wvlp", "train"))]
    json.dump(result, open(out, "w"))
""")


@pytest.mark.slow  # a fresh interpreter
def test_fresh_process_load_dataset_equals_what_was_written(corpus, tmp_path):
    folder, _, _ = corpus
    script = tmp_path / "load.py"
    script.write_text(FRESH)
    proc = subprocess.run(
        [sys.executable, str(script), str(folder), str(tmp_path / "rows.json")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads((tmp_path / "rows.json").read_text())
    card = DatasetCard.load(folder / "README.md").data
    declared = {info["config_name"]: Features._from_yaml_list(info["features"]) for info in card["dataset_info"]}
    assert set(loaded) == {
        "images/train",
        "images/test",
        "descriptions/train",
        "descriptions/test",
        "raw_generations/train",
    }
    for key, value in loaded.items():
        config, split = key.split("/")
        assert Features.from_dict(value["features"]) == declared[config], key
        assert value["rows"] == rows_as_written(folder, config, split), key
        split_info = {
            s["name"]: s for info in card["dataset_info"] if info["config_name"] == config for s in info["splits"]
        }
        assert split_info[split]["num_examples"] == len(value["rows"])


def test_describe_generated_every_key_once_with_provenance(corpus):
    folder, requests, _ = corpus
    raw = rows_as_written(folder, "raw_generations", "train")
    assert len(raw) == 10 * 9 * 2 == requests
    assert len({r["description_id"] for r in raw}) == len(raw)
    stats = json.loads((folder / "stats.json").read_text())
    assert stats["total"] == len(raw) and stats["kept"] + sum(stats["dropped"].values()) == len(raw)
    descriptions = rows_as_written(folder, "descriptions", "train") + rows_as_written(folder, "descriptions", "test")
    assert len(descriptions) == stats["kept"]
    for row in descriptions:
        assert row["llm"] and row["llm_revision"] and json.loads(row["decoding"])["max_new_tokens"] == 48
        assert row["class_id"] and row["class_id"] != row["class_name"]
        assert len(row["knowledge_texts"]) == 2 and row["text"] not in row["knowledge_texts"]
        assert not set(row["knowledge_texts"]) & set(CUPL_QUERIES)
        assert row["knowledge_scores"] == sorted(row["knowledge_scores"], reverse=True)
        assert abs(np.linalg.norm(row["teacher_embedding"]) - 1) < 0.01
    card = (folder / "README.md").read_text()
    assert "would be truncated" in card and "Dropped by reason" in card
    assert stats["knowledge"]["held_out_query_sentences"] == 2
    assert stats["knowledge"]["corpus_size"] == len(set(KNOWLEDGE))
    quality = stats["quality"]
    assert sum(row["count"] for row in quality["per_class"].values()) == stats["kept"]
    assert 0 <= quality["nearest_prompt_accuracy"] <= 1 and 0 < quality["distinct_1"] <= 1
    assert "## Description quality" in card and "| **all** | " + str(stats["kept"]) + " |" in card


def test_rerun_reuses_the_cache(corpus):
    folder, _, tmp = corpus
    with OpenAIStubServer(reply=describing_reply) as server:
        config = DescribeConfig(
            output=str(folder),
            llm={"type": "server", "base_url": server.base_url},
            samples_per_prompt=2,
            max_images_per_split=30,
            knowledge={"sources": [{"text_file": str(tmp / "knowledge.txt")}], "k": 2},
            cleaning={"min_similarity": 0.0},
        )
        run_describe(config)
        assert server.requests == []


def test_query_describer_writes_cross_llm_queries_the_evaluation_finds(corpus):
    from wvlp.evaluation.query_sets import corpus_query_sets

    _, _, tmp = corpus
    with OpenAIStubServer(reply=describing_reply) as server:
        config = DescribeConfig(
            output=str(tmp / "with-queries"),
            cache=str(tmp / "corpus.generations.jsonl"),  # the training descriptions come from the cache
            llm={"type": "server", "base_url": server.base_url},
            # Another describer: the same stub prompted by completion, so its texts differ from the chat ones.
            query_describer={"llm": {"type": "server", "base_url": server.base_url, "prompting": "completion"}},
            samples_per_prompt=2,
            max_images_per_split=30,
            knowledge={"sources": [{"text_file": str(tmp / "knowledge.txt")}], "k": 2},
            cleaning={"min_similarity": 0.0},
        )
        folder = run_describe(config)
        paths = [r.path for r in server.requests if r.path != "/v1/models"]
    assert paths == ["/v1/completions"] * (10 * 9)  # one sample per class and prompt, nothing else regenerated
    stats = json.loads((folder / "stats.json").read_text())["query_describer"]
    assert stats["settings"]["drop_confusable"] is True and stats["total"] == 90
    queries = rows_as_written(folder, "queries", "cross_llm")
    training = {r["text"] for r in rows_as_written(folder, "descriptions", "train")}
    assert len(queries) == stats["kept"] - stats["in_training"] > 0 and not {r["text"] for r in queries} & training
    assert {r["prompting"] for r in queries} == {"completion"}
    assert "## Cross-LLM queries" in (folder / "README.md").read_text()
    labels = [c.name for c in sorted(FashionMNISTSource().classes, key=lambda c: c.label)]
    sets, skipped = corpus_query_sets(folder, labels)
    cross = next(s for s in sets if s.name == "cross-llm")
    assert cross.source["count"] == len(queries) and cross.source["llm"] == ["server-default"]
    with pytest.raises(ValueError, match="query_describer: unknown keys"):
        run_describe(DescribeConfig(output=str(tmp / "bad"), query_describer={"llm": {}, "temperature": 1}))

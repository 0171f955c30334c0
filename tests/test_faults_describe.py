"""Fault battery of `wvlp describe`: folders it must never destroy, a shared cache, stale or moved data, bad images,
bad labels, bad class names and bad config values. Every run goes through a real loopback LLM server."""

import dataclasses
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from wvlp.common.errors import USER_ERROR_STATUS
from wvlp.common.safe_io import MARKER, LockHeldError, UnsafeOutputError
from wvlp.data.generate import DECODING_DEFAULTS, GenerationCache, generate_descriptions, generation_key
from wvlp.data.pipeline import DescribeConfig, load_describe_config, run_describe
from wvlp.data.prompts import PromptTemplate
from wvlp.data.sources import FashionMNISTSource

from tests.helpers import EchoBackend, make_images, png_bytes, save_hf, tree
from tests.openai_server import OpenAIStubServer, describing_reply

SHAPE = PromptTemplate("shape", "Describe the {label}.", "appearance")
PROMPTS = textwrap.dedent("""
    templates:
      - {id: shape, aspect: appearance, template: "Describe the shape of the {label}."}
      - {id: parts, aspect: parts, template: "What are the parts of the {label}?"}
""")


@pytest.fixture
def server():
    with OpenAIStubServer(reply=describing_reply) as stub:
        yield stub


@pytest.fixture
def settings(tmp_path):
    """A fast describe config: 2 prompts x 2 samples, a 3-sentence knowledge file, no off-topic filter."""
    (tmp_path / "prompts.yaml").write_text(PROMPTS)
    (tmp_path / "knowledge.txt").write_text("boots cover the foot\ncoats are worn outdoors\na bag holds things\n")

    def make(server, source: dict, **overrides) -> DescribeConfig:
        values = dict(
            output=str(tmp_path / "corpus"),
            source=source,
            prompts=str(tmp_path / "prompts.yaml"),
            llm={"type": "server", "base_url": server.base_url, "concurrency": 4},
            samples_per_prompt=2,
            knowledge={"sources": [{"text_file": str(tmp_path / "knowledge.txt")}], "k": 1},
            cleaning={"min_similarity": 0.0, "min_words": 1},
        )
        return DescribeConfig(**{**values, **overrides})

    return make


def image_rows(corpus: Path) -> list[dict]:
    rows = []
    for shard in sorted((corpus / "data" / "images").glob("train-*.parquet")):
        rows += pq.read_table(shard).to_pylist()
    return rows


# --------------------------------------------------------------------------- 2: folders describe must not destroy


def test_describe_refuses_an_output_folder_it_did_not_write(tmp_path, server, settings):
    images = make_images(tmp_path / "images", {"boot": 2, "coat": 2})
    precious = tmp_path / "corpus"
    (precious / "thesis").mkdir(parents=True)
    (precious / "thesis" / "chapter1.tex").write_text("years of work")
    (precious / "README.md").write_text("my notes")
    before = tree(precious)
    with pytest.raises(UnsafeOutputError, match=r"output .*corpus holds files this project did not write"):
        run_describe(settings(server, {"type": "imagefolder", "root": str(images)}))
    assert tree(precious) == before and server.requests == []  # refused before any generation


@pytest.mark.parametrize("where", ["the image folder itself", "a folder around the images"])
def test_describe_refuses_to_write_over_the_images_it_reads(tmp_path, server, settings, where):
    images = make_images(tmp_path / "photos" / "images", {"boot": 2, "coat": 2})
    output = images if where == "the image folder itself" else images.parent
    before = tree(tmp_path / "photos")
    with pytest.raises(UnsafeOutputError, match="inside|holds files"):
        run_describe(settings(server, {"type": "imagefolder", "root": str(images)}, output=str(output)))
    assert tree(tmp_path / "photos") == before and server.requests == []


def test_describe_replaces_its_own_corpus_and_refuses_a_cache_inside_it(tmp_path, server, settings):
    images = make_images(tmp_path / "images", {"boot": 2, "coat": 2})
    config = settings(server, {"type": "imagefolder", "root": str(images)})
    corpus = run_describe(config)
    assert json.loads((corpus / MARKER).read_text())["kind"] == "corpus"
    (images / "boot" / "img9.png").write_bytes(png_bytes(200))
    assert len(image_rows(run_describe(config))) == 5  # its own corpus is replaced
    assert not corpus.with_name("corpus.partial").exists() and not corpus.with_name("corpus.old").exists()
    with pytest.raises(UnsafeOutputError, match="cache .* lies inside output"):
        run_describe(settings(server, {"type": "imagefolder", "root": str(images)}, cache=str(corpus / "gen.jsonl")))


# --------------------------------------------------------------------------------- 3: two writers of one cache

HOLDER = textwrap.dedent("""
    import sys
    from wvlp.data.generate import GenerationCache
    cache = GenerationCache(sys.argv[1])
    cache.add({"key": "a|p|0", "raw_text": "first, fsync'd by the holder"})
    print("ready", flush=True)
    sys.stdin.readline()
    cache.add({"key": "a|p|1", "raw_text": "second, after the other process tried"})
    cache.close()
""")


@pytest.mark.slow  # a fresh interpreter
def test_a_second_writer_of_a_cache_is_refused_and_no_row_is_lost(tmp_path):
    cache = tmp_path / "gen.jsonl"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(cache)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        classes = FashionMNISTSource().classes[:1]
        with pytest.raises(LockHeldError, match=f"in use by process {holder.pid}"):
            generate_descriptions(classes, [SHAPE], EchoBackend(), 1, cache, None, seed=0, progress=False)
        with pytest.raises(LockHeldError):
            GenerationCache(cache)
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert holder.wait(timeout=60) == 0
    finally:
        holder.kill()
    rows = [json.loads(line) for line in cache.read_text().splitlines()]
    assert [r["key"] for r in rows] == ["a|p|0", "a|p|1"]
    assert GenerationCache(cache).completed_keys() == {"a|p|0", "a|p|1"}  # free again once the holder is gone


# ------------------------------------------------------------------------ 5, 6: stale images, classes that move


def test_rerun_after_editing_and_adding_images_writes_the_new_images(tmp_path, server, settings):
    images = make_images(tmp_path / "images", {"boot": 2, "coat": 1})
    config = settings(server, {"type": "imagefolder", "root": str(images)})
    run_describe(config)
    (images / "boot" / "img0.png").write_bytes(png_bytes(250))  # edited in place
    (images / "coat" / "img5.png").write_bytes(png_bytes(7))  # added
    rows = {r["image_id"]: r for r in image_rows(run_describe(config))}
    assert set(rows) == {"train/boot/img0.png", "train/boot/img1.png", "train/coat/img0.png", "train/coat/img5.png"}
    for image_id in ("train/boot/img0.png", "train/coat/img5.png"):
        stored = np.asarray(Image.open(io.BytesIO(rows[image_id]["image"]["bytes"])))
        assert (stored == np.asarray(Image.open(images / image_id.removeprefix("train/")))).all(), image_id


def test_cached_descriptions_stay_with_their_class_when_class_folders_change(tmp_path, server, settings):
    images = make_images(tmp_path / "images", {"boot": 1, "coat": 1})
    config = settings(server, {"type": "imagefolder", "root": str(images)})
    run_describe(config)
    first = len(server.requests)
    make_images(images, {"anorak": 1})  # sorts first: boot and coat move to labels 1 and 2
    corpus = run_describe(config)
    assert len(server.requests) - first == 2 * 2  # only the new class is generated
    names = datasets.load_dataset(str(corpus), "images")["train"].features["label"].names
    assert names == ["anorak", "boot", "coat"]
    for split in ("train", "test"):
        for row in datasets.load_dataset(str(corpus), "descriptions")[split]:
            # The stub echoes the prompt, which names the class: a description must sit under its own label.
            assert names[row["label"]] == row["class_name"] and row["class_name"] in row["text"], row


def test_a_cache_whose_class_ids_now_name_other_classes_is_refused(tmp_path):
    classes = FashionMNISTSource().classes[:1]
    cache = tmp_path / "gen.jsonl"
    key = generation_key(classes[0].class_id, "shape", 0)
    cache.write_text(
        json.dumps({"key": key, "class_id": classes[0].class_id, "class_name": "Sneaker", "raw_text": "a shoe"}) + "\n"
    )
    with pytest.raises(
        ValueError, match="belongs to other classes: 'T-shirt/top' .* has cached descriptions of 'Sneaker'"
    ):
        generate_descriptions(classes, [SHAPE], EchoBackend(), 1, cache, None, seed=0, progress=False)


# -------------------------------------------------------------- 8, 10, 13, 14: images that cannot be used as they are


def test_skipped_images_are_listed_with_their_reasons(tmp_path, server, settings):
    images = make_images(tmp_path / "images", {"boot": 2, "coat": 2})
    (images / "boot" / "broken.png").write_bytes(b"not a png at all")
    (images / "coat" / "empty.jpg").write_bytes(b"")
    corpus = run_describe(settings(server, {"type": "imagefolder", "root": str(images)}))
    skipped = {s["image_id"]: s["reason"] for s in json.loads((corpus / "stats.json").read_text())["skipped_images"]}
    assert set(skipped) == {"train/boot/broken.png", "train/coat/empty.jpg"}
    assert "unreadable" in skipped["train/boot/broken.png"] and "0 bytes" in skipped["train/coat/empty.jpg"]
    card = (corpus / "README.md").read_text()
    assert "2 image(s) could not be used" in card and "`train/boot/broken.png`" in card
    assert len(image_rows(corpus)) == 4


def test_exif_orientation_is_applied_to_stored_images(tmp_path, server, settings):
    images = make_images(tmp_path / "images", {"boot": 1, "coat": 1})
    upright = np.zeros((20, 40, 3), np.uint8)
    upright[:, :10] = 255  # a white band on the left: rotated, it moves to the top or bottom
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(upright).save(images / "boot" / "phone.jpg", exif=exif.tobytes(), quality=95)
    corpus = run_describe(settings(server, {"type": "imagefolder", "root": str(images)}))
    row = next(r for r in image_rows(corpus) if r["image_id"].endswith("phone.jpg"))
    stored = np.asarray(Image.open(io.BytesIO(row["image"]["bytes"])).convert("L"), dtype=float)
    assert stored.shape == (40, 20)  # displayed upright: portrait
    assert stored[:10].mean() > 200 and stored[-10:].mean() < 50


def test_cmyk_jpeg_and_float_tiff_are_converted_not_fatal(tmp_path, server, settings):
    images = make_images(tmp_path / "images", {"boot": 1, "coat": 1})
    Image.new("CMYK", (12, 12), (0, 255, 255, 0)).save(images / "boot" / "print.jpg")  # pure red in print colours
    Image.fromarray(np.linspace(0, 1, 144, dtype=np.float32).reshape(12, 12), mode="F").save(
        images / "coat" / "scan.tif"
    )
    corpus = run_describe(settings(server, {"type": "imagefolder", "root": str(images)}))
    rows = {r["image_id"]: Image.open(io.BytesIO(r["image"]["bytes"])) for r in image_rows(corpus)}
    cmyk, tiff = rows["train/boot/print.jpg"], rows["train/coat/scan.tif"]
    assert cmyk.mode == "RGB" and np.asarray(cmyk)[..., 0].min() > 200 and np.asarray(cmyk)[..., 1].max() < 60
    assert tiff.mode in ("L", "RGB") and np.asarray(tiff.convert("L"))[-1, -1] == 255  # 1.0 -> white
    assert json.loads((corpus / "stats.json").read_text())["skipped_images"] == []


def test_unlabelled_dataset_rows_are_skipped_and_counted(tmp_path, server, settings):
    path = save_hf(tmp_path / "ds", datasets.ClassLabel(names=["boot", "coat"]), [0, -1, 1, 0])
    corpus = run_describe(settings(server, {"type": "hf", "path": str(path), "id_column": "id"}))
    skipped = json.loads((corpus / "stats.json").read_text())["skipped_images"]
    assert skipped == [{"image_id": "row-1", "reason": "unlabelled (label -1)"}]
    assert [r["image_id"] for r in image_rows(corpus)] == ["row-0", "row-2", "row-3"]


# ---------------------------------------------------------------- 9: a corpus that load_dataset could not read


def test_every_class_gets_held_out_descriptions_or_the_run_fails(tmp_path, server, settings):
    images = make_images(tmp_path / "images", {"boot": 1, "coat": 1, "bag": 1})
    corpus = run_describe(settings(server, {"type": "imagefolder", "root": str(images)}, heldout_fraction=0.01))
    descriptions = datasets.load_dataset(str(corpus), "descriptions")
    for split in ("train", "test"):
        assert sorted(set(descriptions[split]["class_name"])) == ["bag", "boot", "coat"], split
    with pytest.raises(ValueError, match=r"heldout_fraction=0: must be in \(0, 1\)"):
        load_describe_config(None, {"heldout_fraction": 0})
    from wvlp.data.dataset import split_heldout

    single = [{"description_id": f"d{i}", "class_id": f"c{i}"} for i in range(3)]
    with pytest.raises(ValueError, match="no description is held out"):
        split_heldout(single, 0.5)


# ------------------------------------------------------------- 11, 15, 16: class names, checked before generation


@pytest.mark.parametrize(
    "folders, message",
    [
        (("Sandal", "sandal"), "classes 'Sandal' and 'sandal' have the same prompt name"),
        (("Bag", "bag "), "class folders 'Bag' and 'bag ' |classes 'Bag' and 'bag' have the same prompt name"),
        (
            ("boot", "boot "),
            "class folders 'boot' and 'boot ' have the same name once surrounding spaces are stripped",
        ),
    ],
)
def test_colliding_class_names_are_refused_before_generation(tmp_path, server, settings, folders, message):
    images = make_images(tmp_path / "images", dict.fromkeys(folders, 1))
    with pytest.raises(ValueError, match=message):
        run_describe(settings(server, {"type": "imagefolder", "root": str(images)}))
    assert server.requests == [] and not (tmp_path / "corpus").exists()


def test_a_class_wordnet_does_not_know(tmp_path, server, settings):
    images = make_images(tmp_path / "images", {"boot": 1, "Zorblax 3000 🚀": 1})
    source = {"type": "imagefolder", "root": str(images)}
    with pytest.raises(ValueError, match=r"not WordNet nouns: \['Zorblax 3000 🚀'\].*knowledge.strict is true"):
        run_describe(settings(server, source, knowledge={"sources": ["wordnet"], "k": 1, "strict": True}))
    assert server.requests == []
    corpus = run_describe(settings(server, source, knowledge={"sources": ["wordnet"], "k": 1}))
    stats = json.loads((corpus / "stats.json").read_text())
    assert stats["knowledge"]["classes_without_wordnet"] == ["Zorblax 3000 🚀"]
    assert (
        "Classes WordNet does not know (no WordNet-based knowledge): Zorblax 3000 🚀"
        in (corpus / "README.md").read_text()
    )


# -------------------------------------------------------------------------- 12, 21: config values, checked up front


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "is empty: give at least `output` and `source`"),
        ("- output: x\n", "must be a mapping of keys to values, not a list"),
        ("seed: abc\n", "seed='abc': expected an integer"),
        ("heldout_fraction: abc\n", "heldout_fraction='abc': expected a number"),
        ("samples_per_prompt: 0\n", "samples_per_prompt=0: must be >= 1"),
        ("sample_per_prompt: 2\n", "unknown key\\(s\\): sample_per_prompt"),
        ("source: fashion-mnist\n", "source='fashion-mnist': expected a mapping"),
    ],
)
def test_bad_describe_config_values_name_the_field(tmp_path, text, message):
    path = tmp_path / "describe.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_describe_config(path)


def test_yaml_exponent_floats_are_numbers(tmp_path):
    path = tmp_path / "describe.yaml"
    path.write_text("output: out/x\nheldout_fraction: 2e-1\n")  # YAML 1.1 reads this as the string "2e-1"
    assert load_describe_config(path).heldout_fraction == 0.2


# ----------------------------------------------------------- a real server: outages, sampling, what it serves

FAST_RETRIES = {"max_retries": 1, "backoff_base_s": 0.01, "backoff_max_s": 0.02, "read_timeout_s": 5}


def describe_cli(config: DescribeConfig, tmp_path: Path, capsys) -> tuple[int, str]:
    """`wvlp describe --config` on `config`: (exit status, stderr)."""
    from wvlp.cli import main

    path = tmp_path / "describe.yaml"
    path.write_text(yaml.safe_dump(dataclasses.asdict(config)))
    try:
        main(["describe", "--config", str(path)])
        status = 0
    except SystemExit as exit_info:
        status = exit_info.code
    return status, capsys.readouterr().err


def test_an_outage_past_the_retries_fails_the_run_and_a_rerun_completes_it(tmp_path, settings, capsys):
    images = make_images(tmp_path / "images", {"boot": 1, "coat": 1})  # 2 classes x 2 prompts x 2 samples
    with OpenAIStubServer(reply=describing_reply, down_after=3) as server:  # down for good after 3 answers
        llm = {"type": "server", "base_url": server.base_url, "concurrency": 1, **FAST_RETRIES}
        config = settings(server, {"type": "imagefolder", "root": str(images)}, llm=llm)
        status, err = describe_cli(config, tmp_path, capsys)
        assert server.is_down
        assert status == USER_ERROR_STATUS, err
        assert "wvlp describe: 5 of 8 generations failed" in err and "The 3 that succeeded are kept" in err, err
        assert str(tmp_path / "corpus.generations.jsonl") in err and "llm.server_patience_s" in err
        assert not (tmp_path / "corpus").exists() and not (tmp_path / "corpus.partial").exists()
        cache = tmp_path / "corpus.generations.jsonl"
        kept = cache.read_bytes()
        done = {json.loads(line)["key"] for line in kept.splitlines()}
        assert len(done) == 3

        server.come_back()
        before = len(server.requests)
        corpus = run_describe(config)
        rerun = server.requests[before:]
    assert cache.read_bytes().startswith(kept)  # the first run's successes are there, byte for byte
    records = [json.loads(line) for line in cache.read_text().splitlines()]
    missing = {(r["prompt"], r["seed"]) for r in records if r["key"] not in done}
    assert len(rerun) == 5 and {(r.prompt, r.body["seed"]) for r in rerun} == missing  # only the missing ones
    stats = json.loads((corpus / "stats.json").read_text())
    assert stats["total"] == 8 and stats["dropped"]["error"] == 0 and stats["failed_generations"] == 0


def test_max_failed_generations_lets_a_run_finish_with_that_many(tmp_path, settings, capsys):
    images = make_images(tmp_path / "images", {"boot": 1, "coat": 1})
    with OpenAIStubServer(reply=describing_reply, down_after=7) as server:
        llm = {"type": "server", "base_url": server.base_url, "concurrency": 1, **FAST_RETRIES}
        source = {"type": "imagefolder", "root": str(images)}
        corpus = run_describe(settings(server, source, llm=llm, max_failed_generations=1))
    stats = json.loads((corpus / "stats.json").read_text())
    assert stats["failed_generations"] == 1 and stats["dropped"]["error"] == 1
    assert "error: 1" in (corpus / "README.md").read_text()


def test_an_outage_shorter_than_the_patience_completes(tmp_path, settings):
    images = make_images(tmp_path / "images", {"boot": 1, "coat": 1})
    with OpenAIStubServer(reply=describing_reply, down_after=3, down_for_s=1.0) as server:
        llm = {
            "type": "server",
            "base_url": server.base_url,
            "concurrency": 2,
            "server_patience_s": 30,
            **FAST_RETRIES,
        }
        corpus = run_describe(settings(server, {"type": "imagefolder", "root": str(images)}, llm=llm))
        assert server.outages == 1 and any(r.outcome == "down" for r in server.requests)
    stats = json.loads((corpus / "stats.json").read_text())
    assert stats["total"] == 8 and stats["dropped"]["error"] == 0 and stats["failed_generations"] == 0


def test_records_state_the_sampling_sent_and_the_model_served(tmp_path, settings):
    images = make_images(tmp_path / "images", {"boot": 1, "coat": 1})
    meta = {"n_params": 494032768, "size": 397808192}
    decoding = {"max_new_tokens": 40, "temperature": 0.6, "top_p": 0.9, "top_k": 20, "min_p": 0.05}
    with OpenAIStubServer(
        reply=describing_reply, model="/models/qwen2.5-0.5b.gguf", owned_by="llamacpp", meta=meta
    ) as (server):
        llm = {"type": "server", "base_url": server.base_url, "model": "alias"}
        corpus = run_describe(
            settings(server, {"type": "imagefolder", "root": str(images)}, llm=llm, decoding=decoding)
        )
        bodies = {(r.prompt, r.body["seed"]): r.body for r in server.requests}
    served = {"id": "/models/qwen2.5-0.5b.gguf", "owned_by": "llamacpp", "meta": meta}
    records = [json.loads(line) for line in (tmp_path / "corpus.generations.jsonl").read_text().splitlines()]
    assert len(records) == len(bodies) == 8
    for record in records:
        body = bodies[(record["prompt"], record["seed"])]
        sent = {"max_new_tokens": body["max_tokens"], **{k: body[k] for k in record["decoding"] if k in body}}
        assert record["decoding"] == sent  # the record claims exactly what went out, and nothing left unsent
        assert set(record["decoding"]) == set(DECODING_DEFAULTS)
        assert record["decoding"]["repetition_penalty"] == body["repeat_penalty"] == 1.0
        assert record["llm"] == "alias" and record["llm_server"] == served
    stats = json.loads((corpus / "stats.json").read_text())
    assert stats["llm"] == {"name": "alias", "revision": "alias", "server": served, "decoding": records[0]["decoding"]}
    raw = datasets.load_dataset(str(corpus), "raw_generations")["train"]
    assert {json.loads(value) == served for value in raw["llm_server"]} == {True}
    assert "/models/qwen2.5-0.5b.gguf" in (corpus / "README.md").read_text()


def test_a_null_reply_is_counted_as_empty_and_not_retried(tmp_path, settings):
    images = make_images(tmp_path / "images", {"boot": 1, "coat": 1})

    def reply(prompt: str | None, body: dict) -> str | None:
        return None if "parts" in (prompt or "") else describing_reply(prompt, body)

    with OpenAIStubServer(reply=reply) as server:
        llm = {"type": "server", "base_url": server.base_url, "max_retries": 5}
        corpus = run_describe(settings(server, {"type": "imagefolder", "root": str(images)}, llm=llm))
        nulls = [r for r in server.requests if "parts" in r.prompt]
    assert len(nulls) == 4 and len({r.body["seed"] for r in nulls}) == 4  # one request per key: no retry
    stats = json.loads((corpus / "stats.json").read_text())
    assert stats["dropped"]["empty"] == 4 and stats["dropped"]["error"] == 0
    raw = datasets.load_dataset(str(corpus), "raw_generations")["train"]
    empties = [r for r in raw if r["prompt_id"] == "parts"]
    assert {(r["raw_text"], r["error"], r["drop_reason"]) for r in empties} == {("", None, "empty")}

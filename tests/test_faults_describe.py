"""Fault battery of `wvlp describe`: folders it must never destroy, a shared cache, stale or moved data, bad images,
bad labels, bad class names and bad config values. Every run goes through a real loopback LLM server."""

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
from PIL import Image

from wvlp.common.safe_io import MARKER, LockHeldError, UnsafeOutputError
from wvlp.data.generate import GenerationCache, generate_descriptions, generation_key
from wvlp.data.pipeline import DescribeConfig, load_describe_config, run_describe
from wvlp.data.prompts import PromptTemplate
from wvlp.data.sources import FashionMNISTSource

from tests.helpers import EchoBackend, make_images, png_bytes, save_hf, tree
from tests.openai_server import OpenAIStubServer

SHAPE = PromptTemplate("shape", "Describe the {label}.", "appearance")
PROMPTS = textwrap.dedent("""
    templates:
      - {id: shape, aspect: appearance, template: "Describe the shape of the {label}."}
      - {id: parts, aspect: parts, template: "What are the parts of the {label}?"}
""")


@pytest.fixture
def server():
    with OpenAIStubServer() as stub:
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

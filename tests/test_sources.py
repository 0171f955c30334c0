"""Label sources: Fashion-MNIST, image folders (WordNet-id folders, bad files) and `datasets` datasets."""

import types

import datasets
import pytest
from PIL import Image

from wvlp.data.sources import (
    ClassInfo,
    FashionMNISTSource,
    HFDatasetSource,
    ImageFolderSource,
    build_source,
    clean_label,
)
from wvlp.data.wordnet import WordNet

from tests.helpers import png_bytes, save_hf

BAG = "n02773037"


@pytest.fixture(scope="module")
def fashion() -> FashionMNISTSource:
    return FashionMNISTSource()


def test_fashion_mnist_classes(fashion):
    assert fashion.name == "fashion-mnist" and fashion.splits == ("train", "test")
    assert [c.label for c in fashion.classes] == list(range(10))
    ids = [c.class_id for c in fashion.classes]
    assert len(set(ids)) == 10 and not set(ids) & {c.name for c in fashion.classes}
    by_name = {c.name: c for c in fashion.classes}
    assert by_name["T-shirt/top"].prompt_name == "T-shirt or top"
    assert by_name["T-shirt/top"].class_id == "fashion-mnist:0"
    assert by_name["Ankle boot"].prompt_name == "ankle boot" and by_name["Ankle boot"].class_id == "fashion-mnist:9"
    assert by_name["Bag"].class_id == BAG
    assert all(c.gloss for c in fashion.classes)
    wordnet = WordNet.load()
    for cls in fashion.classes:
        if not cls.class_id.startswith("fashion-mnist:"):
            synset = wordnet.synset(cls.class_id)
            assert cls.gloss in synset.gloss, cls
            lemmas = {lemma.lower() for lemma in synset.lemmas}
            assert cls.name.lower() in lemmas or cls.prompt_name in lemmas, cls


def test_fashion_mnist_streams_examples(fashion):
    assert fashion.num_examples("train") == 60000 and fashion.num_examples("test") == 10000
    stream = fashion.iter_examples("test")
    assert isinstance(stream, types.GeneratorType)
    first = next(stream)
    assert first.image_id == "fashion-mnist/test/00000" and first.label == 9
    assert isinstance(first.image, Image.Image) and first.image.size == (28, 28)
    kept = [e for _, e in zip(range(200), fashion.iter_examples("test", holdout_classes=[9, BAG]))]
    assert kept and all(e.label not in (8, 9) for e in kept)
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        next(fashion.iter_examples("validation"))
    with pytest.raises(ValueError, match="holdout class 'no-such-class'"):
        next(fashion.iter_examples("test", holdout_classes=["no-such-class"]))


@pytest.mark.parametrize(
    "name, expected",
    [
        ("T-shirt/top", "T-shirt or top"),
        ("Ankle boot", "ankle boot"),
        ("tench, Tinca tinca", "tench"),
        ("Granny_Smith", "granny smith"),
        ("NASA rocket", "NASA rocket"),
        ("iPhone case", "iPhone case"),
    ],
)
def test_clean_label(name, expected):
    assert clean_label(name) == expected


def make_folder(root, split=None):
    base = root / split if split else root
    for folder, values in ((BAG, (10, 20)), ("Ankle_boot", (30, 40, 50)), ("cat", (60,))):
        (base / folder).mkdir(parents=True)
        for i, value in enumerate(values):
            (base / folder / f"img{i}.png").write_bytes(png_bytes(value))
    (base / "cat" / "notes.txt").write_text("not an image")
    return base


def test_imagefolder_with_wordnet_ids_and_bad_files(tmp_path):
    train = make_folder(tmp_path, "train")
    (train / "cat" / "empty.png").write_bytes(b"")
    (train / "cat" / "corrupt.jpg").write_bytes(b"\xff\xd8 this is no jpeg")
    (train / "cat" / "truncated.png").write_bytes(png_bytes(70, size=64)[:60])
    (tmp_path / "test" / "cat").mkdir(parents=True)
    (tmp_path / "test" / "cat" / "a.png").write_bytes(png_bytes(80))

    source = build_source({"type": "imagefolder", "root": str(tmp_path)})
    assert isinstance(source, ImageFolderSource) and source.splits == ("train", "test")
    boot, cat, bag = source.classes  # labels follow the sorted folder names
    assert (bag.label, bag.class_id, bag.name, bag.prompt_name) == (2, BAG, "bag", "bag")
    assert bag.gloss == WordNet.load().synset(BAG).gloss
    assert (boot.label, boot.class_id, boot.name, boot.prompt_name) == (
        0,
        "imagefolder:Ankle_boot",
        "Ankle_boot",
        "ankle boot",
    )
    assert boot.gloss is None and cat.class_id == "imagefolder:cat"
    assert source.num_examples("train") == 9  # the .txt is not counted; the three bad images are
    examples = list(source.iter_examples("train"))
    assert [e.image_id for e in examples] == [
        "train/Ankle_boot/img0.png",
        "train/Ankle_boot/img1.png",
        "train/Ankle_boot/img2.png",
        "train/cat/img0.png",
        f"train/{BAG}/img0.png",
        f"train/{BAG}/img1.png",
    ]
    assert [e.label for e in examples] == [0, 0, 0, 1, 2, 2]
    assert examples[0].image.getpixel((0, 0)) == (30, 30, 30)
    skipped = dict(source.skipped)
    assert set(skipped) == {"train/cat/corrupt.jpg", "train/cat/empty.png", "train/cat/truncated.png"}
    assert "0 bytes" in skipped["train/cat/empty.png"] and "unreadable" in skipped["train/cat/corrupt.jpg"]
    list(source.iter_examples("train"))
    assert len(source.skipped) == 3  # listed once, however often the split is read
    assert [e.image_id for e in source.iter_examples("test")] == ["test/cat/a.png"]
    assert [e.label for e in source.iter_examples("train", holdout_classes=[BAG, 1])] == [0, 0, 0]


def test_imagefolder_without_splits(tmp_path):
    make_folder(tmp_path)
    source = ImageFolderSource(tmp_path, name="pets")
    assert source.splits == ("train",) and [c.class_id for c in source.classes] == ["pets:Ankle_boot", "pets:cat", BAG]
    assert len(list(source.iter_examples("train"))) == 6


def test_imagefolder_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        ImageFolderSource(tmp_path / "missing")
    with pytest.raises(ValueError, match="no class subfolders"):
        ImageFolderSource(tmp_path)
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="no image files"):
        ImageFolderSource(tmp_path)
    (tmp_path / "n99999999").mkdir()
    (tmp_path / "n99999999" / "a.png").write_bytes(png_bytes(1))
    with pytest.raises(ValueError, match="'n99999999'.*no such"):
        ImageFolderSource(tmp_path)


@pytest.mark.parametrize("streaming", [False, True])
def test_hf_dataset_source(tmp_path, streaming):
    images = [png_bytes(10), b"garbage, not an image", png_bytes(30), png_bytes(40)]
    path = save_hf(tmp_path / "ds", datasets.ClassLabel(names=["Ankle boot", BAG]), [0, 1, 1, 0], images)
    source = build_source({"type": "hf", "path": str(path), "streaming": streaming, "id_column": "id"})
    assert isinstance(source, HFDatasetSource) and source.name == "ds" and source.splits == ("train", "test")
    boot, bag = source.classes
    assert (boot.class_id, boot.prompt_name) == ("ds:Ankle boot", "ankle boot") and (bag.class_id, bag.name) == (
        BAG,
        "bag",
    )
    examples = list(source.iter_examples("train"))
    assert [(e.image_id, e.label) for e in examples] == [("row-0", 0), ("row-2", 1), ("row-3", 0)]
    assert all(isinstance(e.image, Image.Image) for e in examples)
    assert examples[1].image.getpixel((0, 0)) == (30, 30, 30)
    assert [id_ for id_, _ in source.skipped] == ["row-1"]
    assert source.num_examples("train") == (None if streaming else 4)
    assert [e.image_id for e in source.iter_examples("train", holdout_classes=["ds:Ankle boot"])] == ["row-2"]


def test_hf_dataset_one_split_and_row_ids(tmp_path):
    path = save_hf(tmp_path / "ds", datasets.ClassLabel(names=["cat", "dog"]), [1, 0])
    source = HFDatasetSource(path, split="test")
    assert source.splits == ("test",)
    assert [(e.image_id, e.label) for e in source.iter_examples("test")] == [("test/0", 1)]


def test_hf_dataset_errors(tmp_path):
    path = save_hf(tmp_path / "ints", datasets.Value("int64"), [0, 1])
    with pytest.raises(ValueError, match="label column 'label' is Value.*not a ClassLabel"):
        HFDatasetSource(path)
    with pytest.raises(ValueError, match="column 'category' is missing"):
        HFDatasetSource(path, label_column="category")
    path = save_hf(tmp_path / "unnamed", datasets.ClassLabel(names=["cat", " "]), [0, 1])
    with pytest.raises(ValueError, match="label 1 has no name"):
        HFDatasetSource(path)
    path = save_hf(tmp_path / "unlabelled", datasets.ClassLabel(names=["cat", "dog"]), [0, -1])
    source = HFDatasetSource(path, id_column="id")
    assert [e.image_id for e in source.iter_examples("train")] == ["row-0"]  # -1 means "unlabelled": skipped
    assert source.skipped == [("row-1", "unlabelled (label -1)")]
    with pytest.raises(ValueError, match="split 'validation' is not in the saved dataset"):
        HFDatasetSource(path, split="validation")


def test_build_source_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown source type 'coco'"):
        build_source({"type": "coco"})
    with pytest.raises(ValueError, match="needs a 'type'"):
        build_source({"root": "x"})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['folder'\]"):
        build_source({"type": "imagefolder", "folder": str(tmp_path)})
    with pytest.raises(ValueError, match=r"missing key\(s\) \['root'\]"):
        build_source({"type": "imagefolder"})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['image_col'\]"):
        build_source({"type": "hf", "path": "x", "image_col": "img"})


def test_class_info_is_frozen():
    cls = ClassInfo(0, "src:0", "Cat", "cat")
    with pytest.raises(AttributeError):
        cls.name = "dog"
    assert cls.gloss is None and cls.synonyms == ()

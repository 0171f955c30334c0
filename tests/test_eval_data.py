"""Evaluation loaders: Karpathy-split JSON (real layout, images made here) and a `datasets` caption dataset."""

import json

import datasets
import numpy as np
import pytest
from PIL import Image

from wvlp.evaluation.data import load_caption_dataset, load_eval_data, load_karpathy


def karpathy_fixture(tmp_path):
    """COCO-style (filepath + filename) entries over three splits; one image with a blank sentence."""
    root = tmp_path / "images"
    entries = []
    for i, split in enumerate(["test", "train", "test", "restval", "test", "val"]):
        folder = "val2014" if i % 2 == 0 else "train2014"
        (root / folder).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (12 + i, 10), (20 * i, 0, 0)).save(root / folder / f"img{i}.jpg")
        sentences = [
            {"raw": f"caption {j} of image {i} ", "tokens": [], "imgid": i, "sentid": 10 * i + j}
            for j in range(1 + i % 3)
        ]
        if i == 2:
            sentences.append({"raw": "   ", "tokens": [], "imgid": i, "sentid": 99})
        entries.append(
            {
                "filepath": folder,
                "filename": f"img{i}.jpg",
                "imgid": i,
                "split": split,
                "sentences": sentences,
                "cocoid": 1000 + i,
            }
        )
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps({"images": entries, "dataset": "coco"}))
    return path, root


def test_karpathy_json_loads_the_split_with_positives_per_image(tmp_path):
    path, root = karpathy_fixture(tmp_path)
    data = load_karpathy(path, root, "test")
    assert len(data.images) == 3 and data.images[1].size == (14, 10) and data.images[0].mode == "RGB"
    # images 0, 2, 4 have 1, 3 (+ a blank one dropped), 2 captions
    assert data.texts[0] == "caption 0 of image 0" and len(data.texts) == 6
    assert data.text_groups.tolist() == [0, 1, 1, 1, 2, 2] and data.image_groups.tolist() == [0, 1, 2]
    assert data.labels is None
    train = load_karpathy(path, root, "train")  # train includes COCO's restval
    assert len(train.images) == 2
    assert len(load_karpathy(path, root, "test", max_images=2).images) == 2
    assert len(load_eval_data(path, image_root=root).texts) == 6


def test_karpathy_errors_name_the_problem(tmp_path):
    path, root = karpathy_fixture(tmp_path)
    with pytest.raises(ValueError, match="no image in split 'dev'"):
        load_karpathy(path, root, "dev")
    with pytest.raises(FileNotFoundError, match="image-root"):
        load_karpathy(path, tmp_path, "test")
    with pytest.raises(ValueError, match="image_root"):
        load_eval_data(path)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": [{"filename": "x.jpg"}]}))
    with pytest.raises(ValueError, match="lacks"):
        load_karpathy(bad, root)


def test_caption_dataset_with_list_and_string_captions(tmp_path):
    images = [Image.new("RGB", (8, 8), (i * 40, 0, 0)) for i in range(3)]
    dataset = datasets.Dataset.from_dict(
        {"image": images, "captions": [["a", "b"], ["c"], ["d", "e", "f"]], "label": [0, 1, 0]},
        features=datasets.Features(
            {
                "image": datasets.Image(),
                "captions": datasets.List(datasets.Value("string")),
                "label": datasets.ClassLabel(names=["red", "dark"]),
            }
        ),
    )
    datasets.DatasetDict({"test": dataset}).save_to_disk(str(tmp_path / "ds"))
    data = load_eval_data(tmp_path / "ds")
    assert data.texts == list("abcdef") and data.text_groups.tolist() == [0, 0, 1, 2, 2, 2]
    assert data.labels.tolist() == [0, 1, 0] and data.label_names == ["red", "dark"]
    assert np.asarray(data.images[2]).shape == (8, 8, 3)
    single = load_caption_dataset(
        dataset.rename_column("captions", "caption").map(lambda row: {"caption": row["caption"][0]})
    )
    assert single.texts == ["a", "c", "d"]
    with pytest.raises(ValueError, match="no caption column"):
        load_caption_dataset(dataset.remove_columns("captions"))

"""Processor faults: a saved folder without its tokenizer vocabulary, EXIF orientation of files and PIL images."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

from wvlp.modeling.pretrained_assets import minilm_path
from wvlp.modeling.processing_wvlp import WVLPProcessor, register_processor_auto_classes

from tests.helpers import CHILD, pil_inputs, pv, rgb_u8

ORIENTATION = 0x0112
CAPTIONS = ["a red summer dress", "running shoes for men"]


# ---------------------------------------------------------------------------------------------------------------
# Defect 7: a folder without tokenizer.json must not load with a 5-token vocabulary.


@pytest.fixture
def saved(processor, tmp_path):
    """A folder saved with `save_pretrained` (code and auto_map included) from the default processor."""
    register_processor_auto_classes()
    folder = tmp_path / "processor"
    processor.save_pretrained(folder)
    return folder


def _auto_processor_child(folder: pathlib.Path, tmp_path: pathlib.Path) -> subprocess.CompletedProcess:
    """The fresh-interpreter child `CHILD` (AutoProcessor, trust_remote_code, no modeling_wvlp) on `folder`."""
    image = tmp_path / "image.png"
    Image.fromarray(rgb_u8()).save(image)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "hf_modules"), TOKENIZERS_PARALLELISM="false")
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(folder), str(image), json.dumps(CAPTIONS), str(tmp_path / "child.pt")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_save_pretrained_writes_tokenizer_json_only(saved):
    # What transformers 5 writes for the fast BERT tokenizer: tokenizer.json is its only vocabulary file.
    names = {p.name for p in saved.iterdir()}
    assert {"tokenizer.json", "tokenizer_config.json", "processor_config.json", "processing_wvlp.py"} <= names
    assert "vocab.txt" not in names


def test_intact_folder_loads_and_tokenizes_the_same(processor, saved):
    loaded = WVLPProcessor.from_pretrained(saved)
    assert len(loaded.tokenizer) == len(processor.tokenizer) > 30000
    assert torch.equal(loaded(text=CAPTIONS)["input_ids"], processor(text=CAPTIONS)["input_ids"])


def test_missing_tokenizer_json_fails_naming_folder_and_file(saved):
    (saved / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError) as info:
        WVLPProcessor.from_pretrained(saved)
    message = str(info.value)
    assert repr(str(saved)) in message and "no tokenizer.json" in message, message


@pytest.mark.slow  # a fresh interpreter
def test_remote_code_auto_processor_needs_tokenizer_json(processor, saved, tmp_path):
    intact = _auto_processor_child(saved, tmp_path)
    assert intact.returncode == 0, intact.stderr[-3000:]
    ids = torch.load(tmp_path / "child.pt")[str(saved)]["input_ids"]
    assert torch.equal(ids, processor(text=CAPTIONS)["input_ids"])

    (saved / "tokenizer.json").unlink()
    broken = _auto_processor_child(saved, tmp_path)
    assert broken.returncode != 0
    last_line = broken.stderr.strip().splitlines()[-1]
    assert last_line.startswith("FileNotFoundError: ") and repr(str(saved)) in last_line, broken.stderr[-3000:]
    assert "no tokenizer.json" in last_line, last_line


def test_vocab_txt_alone_still_rebuilds_the_fast_tokenizer(processor, saved):
    (saved / "tokenizer.json").unlink()
    (saved / "vocab.txt").write_bytes((minilm_path() / "vocab.txt").read_bytes())
    loaded = WVLPProcessor.from_pretrained(saved)
    assert torch.equal(loaded(text=CAPTIONS)["input_ids"], processor(text=CAPTIONS)["input_ids"])


def test_slow_tokenizer_folder_without_vocab_names_vocab_txt(processor, tmp_path):
    slow = BertTokenizerLegacy.from_pretrained(minilm_path())
    WVLPProcessor(processor.image_processor, slow).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["tokenizer_class"] == "BertTokenizerLegacy"
    assert torch.equal(
        WVLPProcessor.from_pretrained(tmp_path)(text=CAPTIONS)["input_ids"], processor(text=CAPTIONS)["input_ids"]
    )
    (tmp_path / "vocab.txt").unlink()
    with pytest.raises(FileNotFoundError) as info:
        WVLPProcessor.from_pretrained(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "no vocab.txt" in message, message


# ---------------------------------------------------------------------------------------------------------------
# Defect 10: EXIF orientation is applied to files and PIL images, like transformers.image_utils.load_image.


def _sensor_image() -> np.ndarray:
    """A non-square image as stored by a camera, with a pure red top-left corner."""
    pixels = rgb_u8(40, 64, seed=5) // 2 + 64  # mid-range noise, far from pure red
    pixels[:12, :12] = (255, 0, 0)
    return pixels


def _save_orientation_6_jpeg(path) -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(_sensor_image()).save(path, exif=exif, quality=95)


def test_orientation_6_jpeg_equals_the_rotated_image(ip, tmp_path):
    path = tmp_path / "portrait.jpg"
    _save_orientation_6_jpeg(path)
    with Image.open(path) as stored:
        assert stored.size == (64, 40) and stored.getexif()[ORIENTATION] == 6
        decoded = np.asarray(stored.convert("RGB"))
    upright = np.ascontiguousarray(np.rot90(decoded, k=-1))  # clockwise: the sensor's top-left goes top-right
    assert upright.shape == (64, 40, 3)
    expected = pv(ip, upright)
    for image in (path, str(path), Image.open(path)):
        assert torch.equal(pv(ip, image), expected), type(image)
    # The red corner is now top-right of the (squashed) output: red high, green low there; not so top-left.
    red, green = expected[0, 0], expected[0, 1]
    assert red[:3, -3:].min() > 0.8 and green[:3, -3:].max() < -0.8
    assert not (red[:3, :3].min() > 0.8 and green[:3, :3].max() < -0.8)


def test_orientation_does_not_change_the_callers_image(ip, tmp_path):
    path = tmp_path / "portrait.jpg"
    _save_orientation_6_jpeg(path)
    image = Image.open(path)
    first = pv(ip, image)
    assert image.size == (64, 40) and image.getexif()[ORIENTATION] == 6
    assert torch.equal(pv(ip, image), first)


@pytest.mark.parametrize("name", list(pil_inputs()))
def test_every_pil_mode_with_an_orientation(ip, name):
    image, plain = pil_inputs()[name], pil_inputs()[name]
    image.getexif()[ORIENTATION] = 6
    rotated = plain.transpose(Image.Transpose.ROTATE_270)
    assert not torch.equal(pv(ip, rotated), pv(ip, plain)), name  # the rotation is visible in the output
    assert torch.equal(pv(ip, image), pv(ip, rotated)), name

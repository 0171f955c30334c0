"""WVLPImageProcessor / WVLPProcessor: every input kind, exact references, errors, save/load and remote-code reload."""

import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from wvlp.modeling.configuration_wvlp import WVLPConfig
from wvlp.modeling.image_processing_wvlp import WVLPImageProcessor
from wvlp.modeling.pretrained_assets import DEFAULT_IMAGE_SIZE, build_default_processor, minilm_path
from wvlp.modeling.processing_wvlp import WVLPProcessor, register_processor_auto_classes

from tests.helpers import CHILD, S, pil_inputs, pv, rgb_u8

STEP = 2 / 255  # one 8-bit level after the default normalisation ((x / 255 - 0.5) / 0.5)


def reference(rgb: np.ndarray, size=S) -> np.ndarray:
    """The expected (3, S, S) output computed another way: PIL resize of the RGB image, then numpy normalisation."""
    resized = np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BICUBIC), dtype=np.float64)
    return ((resized / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)


# ---------------------------------------------------------------------------------------------------------------
# Every accepted input kind goes through.


@pytest.mark.parametrize("name", list(pil_inputs()))
def test_every_pil_mode(ip, name):
    image = pil_inputs()[name]
    assert image.mode == name.split("+")[0]
    out = pv(ip, image)
    assert out.shape == (1, 3, S, S) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.min() >= -1 and out.max() <= 1


def _array_inputs():
    rng = np.random.default_rng(3)
    shapes = {"HxW": (17, 21), "HxWx1": (17, 21, 1), "HxWx2": (17, 21, 2), "HxWx3": (17, 21, 3), "HxWx4": (17, 21, 4)}
    out = {}
    for sname, shape in shapes.items():
        out[f"{sname}-uint8"] = rng.integers(0, 256, size=shape, dtype=np.uint8)
        out[f"{sname}-uint16"] = rng.integers(0, 65536, size=shape, dtype=np.uint16)
        out[f"{sname}-bool"] = rng.random(shape) > 0.5
        out[f"{sname}-float32"] = rng.random(shape, dtype=np.float32)
        out[f"{sname}-float64"] = rng.random(shape)
    out["HxWx3-float16"] = rng.random((17, 21, 3)).astype(np.float16)
    out["HxWx3-uint16-bigendian"] = rng.integers(0, 65536, size=(17, 21, 3)).astype(">u2")
    out["HxWx3-noncontiguous"] = rng.integers(0, 256, size=(34, 21, 3), dtype=np.uint8)[::2]
    return out


@pytest.mark.parametrize("name", list(_array_inputs()))
def test_every_numpy_kind(ip, name):
    out = pv(ip, _array_inputs()[name])
    assert out.shape == (1, 3, S, S) and torch.isfinite(out).all()


def _tensor_inputs():
    g = torch.Generator().manual_seed(4)
    out = {}
    for c in (1, 3, 4):
        out[f"{c}xHxW-uint8"] = torch.randint(0, 256, (c, 15, 18), dtype=torch.uint8, generator=g)
        out[f"{c}xHxW-float32"] = torch.rand((c, 15, 18), generator=g)
    out["HxW-uint8"] = torch.randint(0, 256, (15, 18), dtype=torch.uint8, generator=g)
    out["HxW-float64"] = torch.rand((15, 18), generator=g, dtype=torch.float64)
    out["3xHxW-bfloat16"] = torch.rand((3, 15, 18), generator=g).to(torch.bfloat16)
    out["3xHxW-bool"] = torch.rand((3, 15, 18), generator=g) > 0.5
    out["3xHxW-uint16"] = torch.from_numpy(np.random.default_rng(5).integers(0, 65536, (3, 15, 18), dtype=np.uint16))
    out["3xHxW-requires-grad"] = torch.rand((3, 15, 18), generator=g, requires_grad=True)
    return out


@pytest.mark.parametrize("name", list(_tensor_inputs()))
def test_every_tensor_kind(ip, name):
    out = pv(ip, _tensor_inputs()[name])
    assert out.shape == (1, 3, S, S) and torch.isfinite(out).all()


def test_paths_and_mixed_batch(ip, tmp_path):
    rgb = rgb_u8()
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(rgb).save(tmp_path / "b.jpg", quality=95)
    tensor = torch.from_numpy(rgb).permute(2, 0, 1)
    batch = [str(tmp_path / "a.png"), tmp_path / "b.jpg", Image.fromarray(rgb), rgb, tensor]
    out = pv(ip, batch)
    assert out.shape == (5, 3, S, S)
    expected = torch.from_numpy(reference(rgb)).float()
    for i in (0, 2, 3, 4):  # lossless inputs all equal the reference
        torch.testing.assert_close(out[i], expected, atol=1e-6, rtol=0)
    decoded_jpeg = np.asarray(Image.open(tmp_path / "b.jpg").convert("RGB"))  # lossy: its own reference
    torch.testing.assert_close(out[1], torch.from_numpy(reference(decoded_jpeg)).float(), atol=1e-6, rtol=0)
    assert torch.equal(pv(ip, tuple(batch)), out)


def test_return_tensors_variants(ip):
    rgb = rgb_u8()
    pt = pv(ip, [rgb, rgb])
    np_out = ip([rgb, rgb], return_tensors="np")["pixel_values"]
    assert isinstance(np_out, np.ndarray) and np_out.dtype == np.float32 and np.array_equal(np_out, pt.numpy())
    as_list = ip([rgb, rgb], return_tensors=None)["pixel_values"]
    assert isinstance(as_list, list) and len(as_list) == 2 and np.array_equal(as_list[1], pt[1].numpy())
    with pytest.raises(ValueError, match="return_tensors"):
        ip(rgb, return_tensors="tf")


# ---------------------------------------------------------------------------------------------------------------
# Exact values.


@pytest.mark.parametrize("h,w,size", [(23, 37, S), (300, 200, 224), (224, 224, 224), (5, 300, 64)])
def test_rgb_uint8_equals_reference(h, w, size):
    rgb = rgb_u8(h, w, seed=h)
    out = WVLPImageProcessor(size=size)(rgb)["pixel_values"]
    assert out.shape == (1, 3, size, size)
    np.testing.assert_allclose(out[0].numpy(), reference(rgb, size), atol=1e-6, rtol=0)


def test_rescale_normalize_switches_and_overrides():
    rgb = rgb_u8()
    raw = WVLPImageProcessor(size=S, do_rescale=False, do_normalize=False)(rgb)["pixel_values"][0]
    resized = np.asarray(Image.fromarray(rgb).resize((S, S), Image.Resampling.BICUBIC)).transpose(2, 0, 1)
    assert np.array_equal(raw.numpy(), resized.astype(np.float32))
    ip = WVLPImageProcessor(size=S, image_mean=[0.1, 0.2, 0.3], image_std=[0.2, 0.3, 0.4])
    expected = (resized / 255.0 - np.array([0.1, 0.2, 0.3])[:, None, None]) / np.array([0.2, 0.3, 0.4])[:, None, None]
    np.testing.assert_allclose(ip(rgb)["pixel_values"][0].numpy(), expected, atol=1e-5, rtol=0)
    # call-time overrides do not change the processor
    bilinear = ip(rgb, size=20, resample=Image.Resampling.BILINEAR, do_normalize=False)["pixel_values"]
    ref = np.asarray(Image.fromarray(rgb).resize((20, 20), Image.Resampling.BILINEAR)).transpose(2, 0, 1) / 255.0
    np.testing.assert_allclose(bilinear[0].numpy(), ref, atol=1e-6, rtol=0)
    assert ip.size == S and ip.do_normalize


@pytest.mark.parametrize("layout", ["pil-I;16", "pil-I;16B", "pil-I", "numpy-HxW", "numpy-HxWx3", "torch-3xHxW"])
def test_16bit_matches_its_8bit_version(ip, layout):
    """Full-range 16-bit content is scaled by its bit depth (not clipped): same output as the 8-bit `v >> 8`."""
    rng = np.random.default_rng(6)
    shape = (31, 27, 3) if layout in ("numpy-HxWx3", "torch-3xHxW") else (31, 27)
    v16 = rng.integers(0, 65536, size=shape, dtype=np.uint16)
    v16.flat[0] = 65535
    v8 = (v16 >> 8).astype(np.uint8)
    image16 = {
        "pil-I;16": lambda: Image.fromarray(v16),
        "pil-I;16B": lambda: Image.fromarray(v16.astype(">u2")),
        "pil-I": lambda: Image.fromarray(v16.astype(np.int32)),
        "numpy-HxW": lambda: v16,
        "numpy-HxWx3": lambda: v16,
        "torch-3xHxW": lambda: torch.from_numpy(v16).permute(2, 0, 1),
    }[layout]()
    out16, out8 = pv(ip, image16), pv(ip, v8)
    assert out16.max() > 0.9  # not clipped to a white or black image
    torch.testing.assert_close(out16, out8, atol=STEP / 2 * 1.001, rtol=0)  # 1/255 on [0, 1] after normalisation


def test_int32_and_float_scales(ip):
    grey = rgb_u8()[..., 0]
    assert torch.equal(pv(ip, Image.fromarray(grey.astype(np.int32))), pv(ip, grey))  # 8-bit content in mode I
    big = (grey.astype(np.int64) << 23).astype(np.int32)  # 31-bit content
    assert torch.equal(pv(ip, Image.fromarray(big)), pv(ip, grey))
    assert torch.equal(pv(ip, Image.fromarray(grey.astype(np.float32) / 255)), pv(ip, grey))  # mode F
    assert torch.equal(pv(ip, grey / 255.0), pv(ip, grey))
    assert torch.equal(pv(ip, grey > 127), pv(ip, np.where(grey > 127, 255, 0).astype(np.uint8)))


def test_grey_modes_replicate_channels(ip):
    rgb = Image.fromarray(rgb_u8())
    grey = rgb.convert("L")
    out = pv(ip, grey)[0]
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
    assert torch.equal(pv(ip, grey), pv(ip, grey.convert("RGB")))
    assert torch.equal(pv(ip, np.asarray(grey)[..., None]), pv(ip, grey))
    bilevel = rgb.convert("1")
    assert torch.equal(pv(ip, bilevel), pv(ip, bilevel.convert("L")))


def test_color_spaces_convert_to_rgb(ip):
    rgb = Image.fromarray(rgb_u8())
    for mode in ("CMYK", "HSV", "YCbCr"):
        converted = rgb.convert(mode)
        assert torch.equal(pv(ip, converted), pv(ip, converted.convert("RGB")))
        assert (pv(ip, converted) - pv(ip, rgb)).abs().max() < 8 * STEP  # HSV/YCbCr round trips are lossy


def test_transparent_pixels_become_white(ip):
    white = torch.ones(1, 3, S, S)
    rgba = np.zeros((9, 13, 4), dtype=np.uint8)
    rgba[..., :3] = rgb_u8(9, 13)
    cases = {
        "numpy-uint8": rgba,
        "numpy-uint16": rgba.astype(np.uint16) * 257,
        "numpy-float": rgba / 255.0,
        "torch": torch.from_numpy(rgba).permute(2, 0, 1),
        "PIL-RGBA": Image.fromarray(rgba),
        "PIL-LA": Image.fromarray(rgba).convert("LA"),
        "PIL-RGBa": Image.fromarray(rgba).convert("RGBa"),
        "PIL-La": Image.fromarray(rgba).convert("LA").convert("La"),  # PIL's RGBA -> La drops the alpha
        "PIL-PA": Image.fromarray(rgba).convert("PA"),
        "numpy-grey-alpha": np.stack([rgba[..., 0], rgba[..., 3]], axis=-1),
    }
    for name, image in cases.items():
        assert torch.equal(pv(ip, image), white), name
    # alpha 128 over black composites to mid grey (PIL alpha_composite rounding)
    half = np.zeros((4, 4, 4), dtype=np.uint8)
    half[..., 3] = 128
    torch.testing.assert_close(pv(ip, half), torch.full((1, 3, S, S), (127 / 255 - 0.5) / 0.5), atol=STEP, rtol=0)
    # opaque RGBA equals its RGB
    opaque = rgba.copy()
    opaque[..., 3] = 255
    assert torch.equal(pv(ip, opaque), pv(ip, opaque[..., :3]))


def test_palette(ip, tmp_path):
    rgb = rgb_u8()
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    assert torch.equal(pv(ip, palette), pv(ip, palette.convert("RGB")))
    # palette with a transparent index, through a GIF file: that index becomes white, the rest keeps its colour
    palette.info["transparency"] = 0
    palette.save(tmp_path / "p.gif", transparency=0)
    indices = np.asarray(palette)
    expected = np.asarray(palette.convert("RGB")).copy()
    expected[indices == 0] = 255
    reloaded = Image.open(tmp_path / "p.gif")
    assert reloaded.mode == "P" and "transparency" in reloaded.info
    for image in (palette, reloaded, str(tmp_path / "p.gif")):
        np.testing.assert_allclose(pv(ip, image)[0].numpy(), reference(expected), atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------------------------
# Errors name the image and what is wrong.


def _bad_inputs(tmp_path: pathlib.Path):
    truncated_png = tmp_path / "truncated.png"
    Image.fromarray(rgb_u8(64, 64)).save(truncated_png)
    truncated_png.write_bytes(truncated_png.read_bytes()[:-2000])
    truncated_jpg = tmp_path / "truncated.jpg"
    Image.fromarray(rgb_u8(64, 64)).save(truncated_jpg)
    truncated_jpg.write_bytes(truncated_jpg.read_bytes()[:600])
    not_image = tmp_path / "notes.txt"
    not_image.write_text("not an image")
    nan = np.random.default_rng(0).random((8, 8, 3))
    nan[2, 3, 1] = np.nan
    return {
        "zero-size numpy": (np.zeros((0, 5, 3), np.uint8), "zero-size"),
        "zero-size PIL": (Image.new("RGB", (0, 4)), "zero-size"),
        "zero-size tensor": (torch.zeros(3, 4, 0, dtype=torch.uint8), "zero-size"),
        "1-D array": (np.zeros(10, np.uint8), "2 dims|2-D"),
        "4-D array": (np.zeros((2, 8, 8, 3), np.uint8), "list of images"),
        "4-D tensor": (torch.zeros(2, 3, 8, 8), "list of images"),
        "5 channels": (np.zeros((8, 8, 5), np.uint8), "channels"),
        "channels-first numpy": (np.zeros((3, 8, 8), np.uint8), "channels-first"),
        "channels-last tensor": (torch.zeros(8, 8, 3), "channels-last"),
        "nan": (nan, "non-finite"),
        "inf tensor": (torch.full((3, 4, 4), float("inf")), "non-finite"),
        "float above 1": (np.full((4, 4), 1.5), r"\[0, 1\]"),
        "float below 0": (np.full((4, 4, 3), -0.2, np.float32), r"\[0, 1\]"),
        "int64 array": (np.zeros((4, 4, 3), np.int64), "unsupported dtype"),
        "int32 array": (np.zeros((4, 4), np.int32), "unsupported dtype"),
        "complex array": (np.zeros((4, 4), np.complex64), "unsupported dtype"),
        "int64 tensor": (torch.zeros(3, 4, 4, dtype=torch.int64), "unsupported dtype"),
        "negative mode I": (Image.fromarray(np.full((4, 4), -5, np.int32)), "negative"),
        "int": (42, "unsupported type"),
        "dict": ({"pixel_values": 1}, "unsupported type"),
        "nested list": ([rgb_u8()], "flat list"),
        "missing file": (str(tmp_path / "missing.png"), "missing.png"),
        "text file": (not_image, "notes.txt"),
        "truncated png": (truncated_png, "truncated.png"),
        "truncated jpg": (str(truncated_jpg), "truncated.jpg"),
        "directory": (tmp_path, "cannot read"),
    }


def test_bad_inputs_raise_value_error_naming_the_index(ip, tmp_path):
    good = rgb_u8()
    for name, (bad, pattern) in _bad_inputs(tmp_path).items():
        for batch, index in (([good, bad], 1), ([bad], 0), (bad, 0), ([good, good, bad, good], 2)):
            if name == "nested list" and batch is bad:
                continue  # a bare list is a batch, not a bad image
            with pytest.raises(ValueError) as info:
                ip(batch)
            message = str(info.value)
            assert f"image {index} (" in message, (name, message)
            assert re.search(pattern, message), (name, message)


def test_bad_calls(ip):
    with pytest.raises(ValueError, match="no images"):
        ip(None)
    with pytest.raises(ValueError, match="no images"):
        ip([])
    with pytest.raises(ValueError, match="do_convert_rgb=False"):
        ip([rgb_u8(), Image.new("L", (4, 4))], do_convert_rgb=False)
    assert pv(ip, rgb_u8(), do_convert_rgb=False).shape == (1, 3, S, S)
    with pytest.raises(TypeError, match="unexpected"):
        ip(rgb_u8(), sizes=12)
    for kwargs in ({"size": 0}, {"size": {"height": 3, "width": 4}}, {"resample": 17}, {"image_std": [1, 0, 1]}):
        with pytest.raises(ValueError):
            WVLPImageProcessor(**kwargs)
    assert WVLPImageProcessor(size={"height": 40, "width": 40}).size == 40


# ---------------------------------------------------------------------------------------------------------------
# Processor: text + image.


def test_processor_text_and_image(processor, ip):
    rgb = rgb_u8()
    out = processor(images=rgb, text="A Red Summer Dress")
    assert set(out) == {"input_ids", "attention_mask", "pixel_values"}
    assert out["input_ids"].shape == out["attention_mask"].shape == (1, processor.max_length)
    assert out["input_ids"].dtype == torch.long
    assert torch.equal(out["pixel_values"], pv(ip, rgb))
    assert processor.decode(out["input_ids"][0], skip_special_tokens=True) == "a red summer dress"  # uncased
    assert out["input_ids"][0, 0].item() == processor.tokenizer.cls_token_id

    texts = ["shoes", "a long caption " * 40]
    batch = processor(text=texts, padding="longest", max_length=16)
    assert set(batch) == {"input_ids", "attention_mask"} and batch["input_ids"].shape == (2, 16)
    assert batch["attention_mask"][0].sum() == 3 and batch["attention_mask"][1].sum() == 16
    images_only = processor(images=[rgb, rgb], size=20)
    assert set(images_only) == {"pixel_values"} and images_only["pixel_values"].shape == (2, 3, 20, 20)
    assert "token_type_ids" in processor(text="x", return_token_type_ids=True)
    assert processor.model_input_names == ["input_ids", "attention_mask", "pixel_values"]


def test_processor_errors(processor):
    with pytest.raises(ValueError, match="neither"):
        processor()
    for text, pattern in (
        ("", "text 0 is an empty"),
        ("   ", "text 0 is an empty"),
        (["ok", ""], "text 1 is an empty"),
        ([], "non-empty"),
        (["ok", 3], "text 1 is a int"),
    ):
        with pytest.raises(ValueError, match=pattern):
            processor(text=text, images=rgb_u8())
    with pytest.raises(ValueError, match="image 1"):
        processor(text=["a", "b"], images=[rgb_u8(), np.zeros((0, 3))])
    with pytest.raises(ValueError, match="tokenizer"):
        WVLPProcessor(image_processor=WVLPImageProcessor())


def test_minilm_path():
    path = minilm_path()
    assert (path / "vocab.txt").is_file() and (path / "tokenizer_config.json").is_file()


def test_save_and_load_in_process(tmp_path):
    tokenizer = build_default_processor().tokenizer
    image_processor = WVLPImageProcessor(size=40, resample=Image.Resampling.BILINEAR, image_mean=[0.4, 0.5, 0.6])
    processor = WVLPProcessor(image_processor, tokenizer, max_length=20)
    processor.save_pretrained(tmp_path)
    loaded = WVLPProcessor.from_pretrained(tmp_path)
    assert loaded.max_length == 20 and loaded.image_processor.size == 40
    assert loaded.image_processor.to_dict() == processor.image_processor.to_dict()
    inputs = dict(images=[rgb_u8(), Image.new("LA", (9, 9))], text=["red dress", "blue jeans"])
    a, b = processor(**inputs), loaded(**inputs)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    loaded_ip = WVLPImageProcessor.from_pretrained(tmp_path, size=24)  # nested in processor_config.json
    assert loaded_ip.size == 24 and loaded_ip.resample == Image.Resampling.BILINEAR


# ---------------------------------------------------------------------------------------------------------------
# Remote code: a fresh interpreter (`CHILD`) that never imports modeling_wvlp.


@pytest.mark.slow  # a fresh interpreter
def test_fresh_subprocess_auto_processor_reload(tmp_path):
    register_processor_auto_classes()
    WVLPConfig.register_for_auto_class()
    tokenizer = build_default_processor().tokenizer
    # A processor-only folder (non-default settings) and a model-style folder with the WVLP config.json.
    alone, with_config = tmp_path / "processor_only", tmp_path / "with_config"
    image_processor = WVLPImageProcessor(size=48, resample=Image.Resampling.LANCZOS)
    WVLPProcessor(image_processor, tokenizer, max_length=12).save_pretrained(alone)
    WVLPConfig().save_pretrained(with_config)
    build_default_processor().save_pretrained(with_config)
    saved = {p.name for p in alone.iterdir()}
    assert saved >= {"processor_config.json", "processing_wvlp.py", "image_processing_wvlp.py", "tokenizer.json"}
    assert not (alone / "config.json").exists()
    config = json.loads((alone / "processor_config.json").read_text())
    assert config["auto_map"]["AutoProcessor"] == "processing_wvlp.WVLPProcessor"
    assert config["image_processor"]["auto_map"]["AutoImageProcessor"] == "image_processing_wvlp.WVLPImageProcessor"

    images = []
    for name, image in {
        "rgb.png": Image.fromarray(rgb_u8(50, 70)),
        "rgba.png": Image.fromarray(np.dstack([rgb_u8(30, 20), np.full((30, 20), 100, np.uint8)])),
        "grey16.png": Image.fromarray(np.random.default_rng(7).integers(0, 65536, (25, 25), dtype=np.uint16)),
        "palette.gif": Image.fromarray(rgb_u8(20, 20)).convert("P", palette=Image.Palette.ADAPTIVE, colors=8),
    }.items():
        image.save(tmp_path / name)
        images.append(str(tmp_path / name))
    texts = ["A red dress", "running shoes for men", "a hat", "blue jeans"]

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "hf_modules"), TOKENIZERS_PARALLELISM="false")
    result_file = tmp_path / "child.pt"
    child = subprocess.run(
        [sys.executable, "-c", CHILD, f"{alone},{with_config}", ",".join(images), json.dumps(texts), str(result_file)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    results = torch.load(result_file)

    in_process = {alone: WVLPProcessor.from_pretrained(alone), with_config: build_default_processor()}
    for folder, expected_processor in in_process.items():
        expected = expected_processor(images=images, text=texts)
        got = results[str(folder)]
        assert set(got) == set(expected) == {"input_ids", "attention_mask", "pixel_values"}
        for key in expected:
            assert torch.equal(got[key], expected[key]), (folder.name, key)
    assert results[str(alone)]["pixel_values"].shape == (4, 3, 48, 48)
    assert results[str(alone)]["input_ids"].shape == (4, 12)
    size = DEFAULT_IMAGE_SIZE
    assert results[str(with_config)]["pixel_values"].shape == (4, 3, size, size)

"""The built-in EfficientNet-Lite tower and its converter against the reference `efficientnet_lite_pytorch` package."""

import numpy as np
import pytest
import torch
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image
from skimage import data as skimage_data

from wvlp.modeling.configuration_wvlp import WVLPEfficientNetLiteConfig
from wvlp.modeling.convert_efficientnet_lite import (
    convert_state_dict,
    load_pretrained_efficientnet_lite,
    packaged_checkpoint_path,
)
from wvlp.modeling.modeling_efficientnet_lite import WVLPEfficientNetLiteModel, init_efficientnet_weights

from tests.helpers import ROOT, load_script


def lite_pixel_values(image: np.ndarray, size: int = 224) -> torch.Tensor:
    """An RGB uint8 photo as a (1, 3, size, size) batch normalised the EfficientNet-Lite way: (x / 255 - 0.5) / 0.5."""
    resized = Image.fromarray(image).convert("RGB").resize((size, size), Image.BILINEAR)
    pixels = torch.from_numpy(np.asarray(resized, dtype=np.float32)).permute(2, 0, 1)
    return ((pixels / 255.0 - 0.5) / 0.5).unsqueeze(0)


def num_parameters(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def initialised_tower(**config_kwargs) -> WVLPEfficientNetLiteModel:
    """A randomly initialised tower, as PreTrainedModel would leave it."""
    # PyTorch's default conv init shrinks activations block after block to denormals (~1e-7 at the head),
    # which is both unrealistic and very slow on CPU.
    torch.manual_seed(0)
    model = WVLPEfficientNetLiteModel(WVLPEfficientNetLiteConfig(**config_kwargs))
    model.apply(init_efficientnet_weights)
    return model


@pytest.fixture(scope="module")
def reference_lite0() -> EfficientNet:
    return EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=str(packaged_checkpoint_path("lite0"))
    ).eval()


@pytest.fixture(scope="module")
def converted_lite0() -> WVLPEfficientNetLiteModel:
    config = WVLPEfficientNetLiteConfig(variant="lite0", num_labels_imagenet=1000)
    model = WVLPEfficientNetLiteModel(config)
    model.load_state_dict(load_pretrained_efficientnet_lite(config), strict=True)
    return model.eval()


@torch.no_grad()
def test_converted_lite0_matches_reference(reference_lite0, converted_lite0):
    pixel_values = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))

    logits, reference_logits = converted_lite0.imagenet_logits(pixel_values), reference_lite0(pixel_values)
    assert logits.shape == (2, 1000)
    assert (logits - reference_logits).abs().max().item() < 1e-4

    outputs = converted_lite0(pixel_values)
    reference_features = reference_lite0.extract_features(pixel_values)
    assert (outputs.pooler_output - reference_features.mean((2, 3))).abs().max().item() < 1e-4
    assert (outputs.last_hidden_state.mean(1) - outputs.pooler_output).abs().max().item() < 1e-6
    # Tokens are the feature map's cells in row-major order.
    reference_tokens = reference_features.flatten(2).transpose(1, 2)
    assert (outputs.last_hidden_state - reference_tokens).abs().max().item() < 1e-4


@pytest.mark.parametrize(
    ("photo", "expected_classes"),
    [
        ("chelsea", {281, 282, 285}),  # tabby, tiger cat, Egyptian cat
        ("coffee", {967, 968, 504}),  # espresso, cup, coffee mug
    ],
)
@torch.no_grad()
def test_real_photo_top1(reference_lite0, converted_lite0, photo, expected_classes):
    pixel_values = lite_pixel_values(getattr(skimage_data, photo)())
    top1 = converted_lite0.imagenet_logits(pixel_values).argmax(-1).item()
    assert top1 == reference_lite0(pixel_values).argmax(-1).item()
    assert top1 in expected_classes


@pytest.mark.parametrize(("image_size", "num_tokens"), [(224, 49), (64, 4)])
@torch.no_grad()
def test_output_shapes(image_size, num_tokens):
    model = initialised_tower(variant="lite0").eval()
    outputs = model(torch.randn(2, 3, image_size, image_size))
    assert outputs.last_hidden_state.shape == (2, num_tokens, 1280)
    assert outputs.pooler_output.shape == (2, 1280)
    assert model.classifier is None
    with pytest.raises(ValueError, match="num_labels_imagenet"):
        model.imagenet_logits(torch.randn(1, 3, 64, 64))


@pytest.mark.parametrize(("variant", "num_labels_imagenet"), [("lite1", 1000), ("lite2", 0)])
def test_architecture_matches_reference(variant, num_labels_imagenet):
    reference = EfficientNet.from_name(f"efficientnet-{variant}")
    config = WVLPEfficientNetLiteConfig(variant=variant, num_labels_imagenet=num_labels_imagenet)
    model = WVLPEfficientNetLiteModel(config)

    classifier_parameters = 0 if num_labels_imagenet else num_parameters(reference._fc)
    assert num_parameters(model) == num_parameters(reference) - classifier_parameters
    # Every reference tensor has a same-shaped counterpart (convert_state_dict checks shapes), and nothing is left over.
    converted = convert_state_dict(reference.state_dict(), config)
    model.load_state_dict(converted, strict=True)
    assert any(key.startswith("classifier.") for key in converted) == bool(num_labels_imagenet)


@torch.no_grad()
def test_lite2_matches_reference_at_odd_intermediate_sizes():
    # 260 px goes through 130 -> 65 -> 33 -> 17 -> 9, so strided convs also see odd sizes (symmetric SAME padding).
    torch.manual_seed(0)
    reference = EfficientNet.from_name("efficientnet-lite2").eval()
    reference.apply(init_efficientnet_weights)
    for norm in (module for module in reference.modules() if isinstance(module, torch.nn.BatchNorm2d)):
        norm.running_mean.uniform_(-0.1, 0.1)
        norm.running_var.uniform_(0.5, 2.0)
    model = WVLPEfficientNetLiteModel(WVLPEfficientNetLiteConfig(variant="lite2", num_labels_imagenet=1000)).eval()
    model.load_state_dict(convert_state_dict(reference.state_dict(), model.config), strict=True)
    pixel_values = torch.randn(1, 3, 260, 260, generator=torch.Generator().manual_seed(0))

    # The tower runs NHWC; the reference in the same layout sums in the same order (NCHW differs by ~2e-5 relative).
    nhwc = pixel_values.contiguous(memory_format=torch.channels_last)
    features, reference_features = model.extract_features(pixel_values), reference.extract_features(nhwc)
    assert features.shape == reference_features.shape == (1, 1280, 9, 9)
    scale = reference_features.abs().max().item()
    assert scale > 0.1
    assert (features - reference_features).abs().max().item() <= 1e-5 * scale


def test_convert_state_dict_names_unknown_keys():
    config = WVLPEfficientNetLiteConfig(variant="lite0")
    state_dict = EfficientNet.from_name("efficientnet-lite0").state_dict()
    state_dict["_blocks.3._se_reduce.weight"] = torch.zeros(4, 96, 1, 1)
    with pytest.raises(ValueError, match=r"_blocks\.3\._se_reduce\.weight"):
        convert_state_dict(state_dict, config)


def test_convert_state_dict_rejects_wrong_variant():
    # lite1 has more blocks than lite0: the extra ones are reported, not silently dropped.
    with pytest.raises(ValueError, match=r"no counterpart: \['_blocks\.16\."):
        convert_state_dict(EfficientNet.from_name("efficientnet-lite1").state_dict(), WVLPEfficientNetLiteConfig())


def test_packaged_checkpoint_errors():
    assert packaged_checkpoint_path("lite0").suffix == ".pth"
    with pytest.raises(ValueError, match="lite9"):
        packaged_checkpoint_path("lite9")
    with pytest.raises(ModuleNotFoundError, match="lite"):
        packaged_checkpoint_path("lite4")


@torch.no_grad()
def test_drop_connect_only_in_training():
    model = initialised_tower(variant="lite0", drop_connect_rate=0.5)
    pixel_values = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))

    def pooled(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return model(pixel_values).pooler_output

    model.eval()
    assert torch.equal(pooled(0), pooled(1))
    # Batch norm in training mode is deterministic, so any difference between seeds comes from drop-connect.
    model.train()
    assert torch.equal(pooled(0), pooled(0))
    assert not torch.equal(pooled(0), pooled(1))


@torch.no_grad()
def test_init_efficientnet_weights():
    model = WVLPEfficientNetLiteModel(WVLPEfficientNetLiteConfig(variant="lite0"))
    norm = model.blocks[3].depthwise.norm
    torch.nn.init.normal_(norm.weight)
    norm.running_var.fill_(5.0)
    model.apply(init_efficientnet_weights)
    assert torch.equal(norm.weight, torch.ones_like(norm.weight))
    assert torch.equal(norm.running_var, torch.ones_like(norm.running_var))
    # Kaiming fan-out per group: the head's 1x1 conv has fan-out 1280, a 3x3 depthwise conv only 9.
    for weight, fan_out in ((model.head.conv.weight, 1280), (model.blocks[1].depthwise.conv.weight, 9)):
        expected_std = (2 / fan_out) ** 0.5
        assert abs(weight.std().item() - expected_std) < 0.1 * expected_std


def test_tower_runs_channels_last_and_matches_the_nchw_layers():
    # bench/image_layout.py times these two paths against each other; they must compute the same features.
    bench = load_script(ROOT / "bench" / "image_layout.py", "wvlp_bench_image_layout")
    model = initialised_tower().eval()
    pixel_values = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        nhwc, nchw = model.extract_features(pixel_values), bench.nchw_features(model, pixel_values)
    assert nhwc.is_contiguous(memory_format=torch.channels_last) and not nhwc.is_contiguous()
    assert nchw.is_contiguous()
    # The same arithmetic in another summation order: fp32 rounding, a few 1e-5 of the largest feature.
    assert (nhwc - nchw).abs().max().item() <= 5e-5 * nchw.abs().max().item()
    assert model(pixel_values).pooler_output.shape == (2, model.config.hidden_size)

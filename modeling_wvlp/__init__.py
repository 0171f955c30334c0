"""wvlp: prompt-based weakly-supervised vision-language pre-training, as a transformers model."""

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForPreTraining, AutoProcessor

from .configuration_pformer import PFormerConfig
from .configuration_wvlp import (
    LOSS_TERMS,
    WVLPConfig,
    WVLPEfficientNetLiteConfig,
    WVLPPreTrainingConfig,
    WVLPTextConfig,
)
from .image_processing_wvlp import WVLPImageProcessor
from .modeling_pformer import PFormerModel, PFormerOutput
from .modeling_wvlp import WVLPForPreTraining, WVLPModel, WVLPOutput, WVLPPreTrainedModel, WVLPPreTrainingOutput
from .pretrained_assets import build_default_model, build_default_processor, default_config
from .processing_wvlp import WVLPProcessor, register_processor_auto_classes


def register_auto_classes() -> None:
    """Registers WVLP with the Auto classes, in-library and (through `auto_map`) for `trust_remote_code` loading."""
    AutoConfig.register(WVLPConfig.model_type, WVLPConfig, exist_ok=True)
    AutoModel.register(WVLPConfig, WVLPModel, exist_ok=True)
    AutoModelForPreTraining.register(WVLPConfig, WVLPForPreTraining, exist_ok=True)
    AutoProcessor.register(WVLPConfig, WVLPProcessor, exist_ok=True)
    # 5.x: the second positional slot is the legacy "slow" class, hence the keyword.
    AutoImageProcessor.register(WVLPConfig, image_processor_classes={"pil": WVLPImageProcessor}, exist_ok=True)
    WVLPConfig.register_for_auto_class()
    WVLPModel.register_for_auto_class("AutoModel")
    WVLPForPreTraining.register_for_auto_class("AutoModelForPreTraining")
    register_processor_auto_classes()
    AutoConfig.register(PFormerConfig.model_type, PFormerConfig, exist_ok=True)
    AutoModel.register(PFormerConfig, PFormerModel, exist_ok=True)
    PFormerConfig.register_for_auto_class()
    PFormerModel.register_for_auto_class("AutoModel")


register_auto_classes()

__all__ = [
    "LOSS_TERMS",
    "PFormerConfig",
    "PFormerModel",
    "PFormerOutput",
    "WVLPConfig",
    "WVLPEfficientNetLiteConfig",
    "WVLPImageProcessor",
    "WVLPProcessor",
    "build_default_model",
    "build_default_processor",
    "default_config",
    "WVLPTextConfig",
    "WVLPForPreTraining",
    "WVLPModel",
    "WVLPOutput",
    "WVLPPreTrainedModel",
    "WVLPPreTrainingConfig",
    "WVLPPreTrainingOutput",
    "register_auto_classes",
]

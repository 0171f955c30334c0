"""wvlp: prompt-based weakly-supervised vision-language pre-training, as a transformers model."""

from transformers import AutoConfig, AutoModel, AutoModelForPreTraining

from .configuration_wvlp import WVLPConfig, WVLPEfficientNetLiteConfig, WVLPTextConfig
from .modeling_wvlp import WVLPForPreTraining, WVLPModel, WVLPOutput, WVLPPreTrainedModel, WVLPPreTrainingOutput


def register_auto_classes() -> None:
    """Registers WVLP with the Auto classes, in-library and (through `auto_map`) for `trust_remote_code` loading."""
    AutoConfig.register(WVLPConfig.model_type, WVLPConfig, exist_ok=True)
    AutoModel.register(WVLPConfig, WVLPModel, exist_ok=True)
    AutoModelForPreTraining.register(WVLPConfig, WVLPForPreTraining, exist_ok=True)
    WVLPConfig.register_for_auto_class()
    WVLPModel.register_for_auto_class("AutoModel")
    WVLPForPreTraining.register_for_auto_class("AutoModelForPreTraining")


register_auto_classes()

__all__ = [
    "WVLPConfig",
    "WVLPEfficientNetLiteConfig",
    "WVLPTextConfig",
    "WVLPForPreTraining",
    "WVLPModel",
    "WVLPOutput",
    "WVLPPreTrainedModel",
    "WVLPPreTrainingOutput",
    "register_auto_classes",
]

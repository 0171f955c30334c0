"""Configurations of the WVLP vision-language model: the built-in vision tower, the unified text/fusion tower, and the model."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_MAPPING_NAMES

# (width multiplier, depth multiplier, native resolution, dropout) of each EfficientNet-Lite variant.
EFFICIENTNET_LITE_VARIANTS = {
    "lite0": (1.0, 1.0, 224, 0.2),
    "lite1": (1.0, 1.1, 240, 0.2),
    "lite2": (1.1, 1.2, 260, 0.3),
    "lite3": (1.2, 1.4, 280, 0.3),
    "lite4": (1.4, 1.8, 300, 0.3),
}


@strict
class WVLPEfficientNetLiteConfig(PreTrainedConfig):
    r"""Built-in EfficientNet-Lite image tower: a grid of `hidden_size`-d tokens plus their mean as the pooled token."""

    model_type = "wvlp_efficientnet_lite"
    base_config_key = "vision_config"

    variant: str = "lite0"
    image_size: int = 224
    num_channels: int = 3
    hidden_size: int = 1280
    batch_norm_eps: float = 1e-3
    batch_norm_momentum: float = 0.01
    drop_connect_rate: float = 0.2
    num_labels_imagenet: int = 0  # >0 keeps the ImageNet classifier (used to verify converted weights)

    def __post_init__(self, **kwargs):
        if self.variant not in EFFICIENTNET_LITE_VARIANTS:
            raise ValueError(
                f"vision_config.variant={self.variant!r} is not an EfficientNet-Lite variant; "
                f"choose one of {sorted(EFFICIENTNET_LITE_VARIANTS)}"
            )
        if self.image_size < 32:
            raise ValueError(f"vision_config.image_size={self.image_size} must be >= 32 (the tower downsamples by 32)")
        super().__post_init__(**kwargs)


@strict
class WVLPTextConfig(PreTrainedConfig):
    r"""BERT-style text tower whose upper layers double as the fusion encoder (cross-attention in fusion mode)."""

    model_type = "wvlp_text"
    base_config_key = "text_config"

    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    pooling: str = "mean"  # "mean" (how MiniLM was trained) or "cls" (ALBEF)

    def __post_init__(self, **kwargs):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"text_config.hidden_size={self.hidden_size} is not divisible by "
                f"text_config.num_attention_heads={self.num_attention_heads}"
            )
        if self.pooling not in ("mean", "cls"):
            raise ValueError(f"text_config.pooling={self.pooling!r} must be 'mean' or 'cls'")
        super().__post_init__(**kwargs)


def _resolve_vision_config(vision_config: dict | PreTrainedConfig | None) -> PreTrainedConfig:
    """Builds the vision sub-config: the built-in EfficientNet-Lite or any transformers vision backbone config."""
    if isinstance(vision_config, PreTrainedConfig):
        config = vision_config
    else:
        kwargs = dict(vision_config or {})
        model_type = kwargs.pop("model_type", WVLPEfficientNetLiteConfig.model_type)
        if model_type == WVLPEfficientNetLiteConfig.model_type:
            return WVLPEfficientNetLiteConfig(**kwargs)
        if model_type not in CONFIG_MAPPING:
            raise ValueError(f"vision_config.model_type={model_type!r} is not a known vision tower")
        config = CONFIG_MAPPING[model_type](**kwargs)
    if config.model_type != WVLPEfficientNetLiteConfig.model_type:
        if config.model_type not in MODEL_FOR_IMAGE_MAPPING_NAMES or not hasattr(config, "hidden_size"):
            raise ValueError(
                f"vision_config.model_type={config.model_type!r} is not a supported vision tower: use "
                f"'{WVLPEfficientNetLiteConfig.model_type}' or a transformers backbone with a hidden_size (vit, deit, ...)"
            )
    return config


@strict
class WVLPConfig(PreTrainedConfig):
    r"""
    WVLP: an image tower, a text tower unified with the fusion encoder, ITC/ITM/MLM heads and the pre-training switches.

    Loss terms are named after the spec's pre-training objective; a term with weight 0 is skipped entirely.
    """

    model_type = "wvlp"
    sub_configs = {"vision_config": WVLPEfficientNetLiteConfig, "text_config": WVLPTextConfig}

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    embed_dim: int = 256
    fusion_layer: int = 3  # text layers >= fusion_layer get cross-attention to image tokens in fusion mode
    temperature: float = 0.07
    temperature_min: float = 0.001
    temperature_max: float = 0.5
    # Momentum (EMA) teacher, its queues and momentum distillation (ALBEF).
    momentum: float = 0.995
    alpha: float = 0.4
    queue_size: int = 4096
    momentum_distillation: bool = True
    # Same-category pairs are positives; False gives plain one-hot (instance) ITC, for ablation.
    category_aware_targets: bool = True
    itc_loss_weight: float = 1.0
    itm_loss_weight: float = 1.0
    mlm_loss_weight: float = 1.0
    imc_loss_weight: float = 0.0
    knowledge_loss_weight: float = 0.5
    # Share of the ITC targets taken from a frozen text teacher's soft targets (given by the distillation collator).
    frozen_teacher_weight: float = 0.0
    initializer_range: float = 0.02
    tie_word_embeddings: bool = True
    # Image-to-prompt bridge (P-Former stage 2): learnable queries -> K soft prompts for a frozen causal LM.
    # Off by default; the frozen LM (and P-Former) are attached at training time, never saved with the model.
    prompt_bridge: bool = False
    bridge_num_prompts: int = 32
    bridge_num_layers: int = 2
    bridge_prompt_dim: int = 576  # the frozen LM's hidden size (SmolLM2-135M: 576)
    language_model_path: str | None = None  # where generate_description loads the LM from when none is passed
    generation_loss_weight: float = 0.0
    pformer_alignment_loss_weight: float = 0.0

    def __post_init__(self, **kwargs):
        self.vision_config = _resolve_vision_config(self.vision_config)
        if not isinstance(self.text_config, PreTrainedConfig):
            self.text_config = WVLPTextConfig(**(self.text_config or {}))
        if self.embed_dim < 1:
            raise ValueError(f"embed_dim={self.embed_dim} must be >= 1")
        n_layers = self.text_config.num_hidden_layers
        if not 0 <= self.fusion_layer < n_layers:
            raise ValueError(
                f"fusion_layer={self.fusion_layer} must be in [0, text_config.num_hidden_layers={n_layers}): "
                "at least one text layer has to carry cross-attention"
            )
        if not self.temperature_min <= self.temperature <= self.temperature_max:
            raise ValueError(
                f"temperature={self.temperature} is outside [temperature_min, temperature_max]="
                f"[{self.temperature_min}, {self.temperature_max}]"
            )
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum={self.momentum} must be in [0, 1)")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha={self.alpha} must be in [0, 1]")
        if not 0.0 <= self.frozen_teacher_weight <= 1.0:
            raise ValueError(f"frozen_teacher_weight={self.frozen_teacher_weight} must be in [0, 1]")
        if self.queue_size < 0:
            raise ValueError(f"queue_size={self.queue_size} must be >= 0")
        for name in ("itc", "itm", "mlm", "imc", "knowledge", "generation", "pformer_alignment"):
            if getattr(self, f"{name}_loss_weight") < 0:
                raise ValueError(f"{name}_loss_weight must be >= 0")
        for name in ("bridge_num_prompts", "bridge_num_layers", "bridge_prompt_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if not self.prompt_bridge and (self.generation_loss_weight > 0 or self.pformer_alignment_loss_weight > 0):
            raise ValueError(
                "generation_loss_weight / pformer_alignment_loss_weight > 0 need the image-to-prompt bridge: "
                "set prompt_bridge=True"
            )
        super().__post_init__(**kwargs)

    @property
    def vision_hidden_size(self) -> int:
        """Width of the image tokens the fusion layers attend to."""
        return self.vision_config.hidden_size


__all__ = ["WVLPConfig", "WVLPEfficientNetLiteConfig", "WVLPTextConfig"]

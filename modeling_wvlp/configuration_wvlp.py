"""Configurations of the WVLP vision-language model: the built-in vision tower, the unified text/fusion tower, the
model, and the pre-training settings that `WVLPForPreTraining` adds to it (never part of a published model)."""

import dataclasses
import os

import transformers
from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_MAPPING_NAMES
from transformers.utils import logging

logger = logging.get_logger(__name__)

# The pre-training loss terms, in the order WVLPForPreTraining sums them: each has a `<term>_loss_weight` in
# WVLPPreTrainingConfig and a `<term>_loss` field in WVLPPreTrainingOutput (README.md, "Pre-training objective").
LOSS_TERMS = ("itc", "itm", "mlm", "imc", "knowledge", "generation", "pformer_alignment")
# The terms a locked-text step computes (cached pooled text, no text tokens): the others read the text tower's states.
LOCKED_TEXT_TERMS = ("itc", "imc", "knowledge")

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
    r"""
    Configuration of the built-in EfficientNet-Lite image tower: a grid of `hidden_size`-d tokens (the last feature
    map, flattened) plus their mean as the pooled token.

    Args:
        variant (`str`, *optional*, defaults to `"lite0"`):
            The EfficientNet-Lite variant (`"lite0"` to `"lite4"`): its width and depth multipliers and dropout.
        image_size (`int`, *optional*, defaults to 224):
            Side of the square input images; at least 32, since the tower downsamples by 32.
        num_channels (`int`, *optional*, defaults to 3):
            Number of input channels.
        hidden_size (`int`, *optional*, defaults to 1280):
            Width of the image tokens (the channels of the tower's last 1x1 convolution).
        batch_norm_eps (`float | int`, *optional*, defaults to 1e-3):
            Epsilon of the BatchNorm layers (TensorFlow's default, which the converted weights were trained with).
        batch_norm_momentum (`float | int`, *optional*, defaults to 0.01):
            Momentum of the BatchNorm running statistics (PyTorch convention: the weight of the new batch).
        drop_connect_rate (`float | int`, *optional*, defaults to 0.2):
            Stochastic-depth rate of the last block; earlier blocks drop proportionally less.
        num_labels_imagenet (`int`, *optional*, defaults to 0):
            When > 0, keeps an ImageNet classifier of that many classes (used to verify converted weights).
    """

    model_type = "wvlp_efficientnet_lite"
    base_config_key = "vision_config"

    variant: str = "lite0"
    image_size: int = 224
    num_channels: int = 3
    hidden_size: int = 1280
    batch_norm_eps: float | int = 1e-3
    batch_norm_momentum: float | int = 0.01
    drop_connect_rate: float | int = 0.2
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
    r"""
    Configuration of the BERT-style text tower, whose upper layers double as the fusion encoder (they cross-attend to
    the image tokens in fusion mode). The blocks of `modeling_text.py` take this config and nothing else.

    Args:
        vocab_size (`int`, *optional*, defaults to 30522):
            Vocabulary size (BERT uncased).
        hidden_size (`int`, *optional*, defaults to 384):
            Width of the hidden states (MiniLM-L6: 384).
        num_hidden_layers (`int`, *optional*, defaults to 6):
            Number of layers; those from `WVLPConfig.fusion_layer` upward carry cross-attention.
        num_attention_heads (`int`, *optional*, defaults to 12):
            Attention heads per layer; must divide `hidden_size`.
        intermediate_size (`int`, *optional*, defaults to 1536):
            Width of the MLP inside each layer.
        hidden_act (`str`, *optional*, defaults to `"gelu"`):
            Activation of the MLP and of the MLM head.
        hidden_dropout_prob (`float | int`, *optional*, defaults to 0.1):
            Dropout on embeddings and on every residual branch.
        attention_probs_dropout_prob (`float | int`, *optional*, defaults to 0.1):
            Dropout on the attention probabilities.
        max_position_embeddings (`int`, *optional*, defaults to 512):
            Longest input the learned position embeddings cover.
        type_vocab_size (`int`, *optional*, defaults to 2):
            Token-type vocabulary (only type 0 is used; kept so BERT checkpoints load).
        layer_norm_eps (`float | int`, *optional*, defaults to 1e-12):
            Epsilon of the LayerNorms.
        pad_token_id (`int | None`, *optional*, defaults to 0):
            Padding token id, whose word embedding gets no gradient.
        pooling (`str`, *optional*, defaults to `"mean"`):
            How the pooled text token is formed: `"mean"` over real tokens (how MiniLM was trained) or `"cls"` (ALBEF).
    """

    model_type = "wvlp_text"
    base_config_key = "text_config"

    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.1
    attention_probs_dropout_prob: float | int = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float | int = 1e-12
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


@strict
class WVLPPreTrainingConfig(PreTrainedConfig):
    r"""
    Pre-training settings of `WVLPForPreTraining`: the momentum (EMA) teacher, its feature queues, momentum
    distillation and the weight of every loss term. Training state, not architecture: `WVLPForPreTraining` creates it
    as `WVLPConfig.pretraining_config`, and `WVLPForPreTraining.published_model()` drops it, so a published
    `WVLPModel`'s config.json carries none of it. The loss terms are described in README.md, "Pre-training objective".

    Args:
        momentum (`float | int`, *optional*, defaults to 0.995):
            EMA coefficient of the momentum teacher (ALBEF): after every optimiser step,
            teacher <- momentum * teacher + (1 - momentum) * student. In [0, 1).
        alpha (`float | int`, *optional*, defaults to 0.4):
            Momentum-distillation weight (ALBEF): the contrastive and MLM targets are
            alpha * teacher's softmax + (1 - alpha) * hard targets. In [0, 1]; the trainer may warm it up.
        queue_size (`int`, *optional*, defaults to 4096):
            Number of past teacher embeddings (per modality) kept in the queues that extend the contrastive
            columns beyond the batch (ALBEF/MoCo). 0 disables the queues. Sets the shape of the queue buffers.
        momentum_distillation (`bool`, *optional*, defaults to `True`):
            Whether the teacher's soft targets are mixed in at all; `False` means alpha = 0 everywhere.
        category_aware_targets (`bool`, *optional*, defaults to `True`):
            Whether same-category pairs are positives of each other; `False` gives plain one-hot (instance) ITC, for
            ablation.
        frozen_teacher_weight (`float | int`, *optional*, defaults to 0.0):
            Share of the ITC targets taken from a frozen text teacher's soft targets (given by the distillation
            collator as `teacher_targets`). In [0, 1].
        itc_loss_weight (`float | int`, *optional*, defaults to 1.0):
            Weight of the image-text contrastive loss.
        itm_loss_weight (`float | int`, *optional*, defaults to 1.0):
            Weight of image-text matching with hard negatives.
        mlm_loss_weight (`float | int`, *optional*, defaults to 1.0):
            Weight of image-conditioned masked language modelling.
        imc_loss_weight (`float | int`, *optional*, defaults to 0.0):
            Weight of the intra-modal contrastive loss (an image against its augmented view, a text against itself).
        knowledge_loss_weight (`float | int`, *optional*, defaults to 0.5):
            Weight of the contrastive loss between images and retrieved external-knowledge sentences.
        generation_loss_weight (`float | int`, *optional*, defaults to 0.0):
            Weight of image-grounded generation of the paired description through the frozen LM (needs
            `WVLPConfig.prompt_bridge`).
        pformer_alignment_loss_weight (`float | int`, *optional*, defaults to 0.0):
            Weight of the MSE between the bridge's image prompts and a frozen P-Former's prompts of the paired
            description (P-Former stage 2; needs `WVLPConfig.prompt_bridge`).
        fusion_batch_size (`int`, *optional*, defaults to 0):
            ITM and MLM, the terms that run the fusion layers, read only the first `fusion_batch_size` pairs of each
            process's batch (their hard negatives are still drawn from the whole batch's sub-batches); 0: all pairs.
            A cheaper full step: the contrastive terms keep the whole batch.

    A term with weight 0 is skipped entirely.
    """

    model_type = "wvlp_pretraining"
    base_config_key = "pretraining_config"

    # Momentum (EMA) teacher, its queues and momentum distillation (ALBEF).
    momentum: float | int = 0.995
    alpha: float | int = 0.4
    queue_size: int = 4096
    momentum_distillation: bool = True
    # Same-category pairs are positives; False gives plain one-hot (instance) ITC, for ablation.
    category_aware_targets: bool = True
    # Share of the ITC targets taken from a frozen text teacher's soft targets (given by the distillation collator).
    frozen_teacher_weight: float | int = 0.0
    itc_loss_weight: float | int = 1.0
    itm_loss_weight: float | int = 1.0
    mlm_loss_weight: float | int = 1.0
    imc_loss_weight: float | int = 0.0
    knowledge_loss_weight: float | int = 0.5
    generation_loss_weight: float | int = 0.0
    pformer_alignment_loss_weight: float | int = 0.0
    fusion_batch_size: int = 0

    def __post_init__(self, **kwargs):
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum={self.momentum} must be in [0, 1)")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha={self.alpha} must be in [0, 1]")
        if not 0.0 <= self.frozen_teacher_weight <= 1.0:
            raise ValueError(f"frozen_teacher_weight={self.frozen_teacher_weight} must be in [0, 1]")
        if self.queue_size < 0:
            raise ValueError(f"queue_size={self.queue_size} must be >= 0")
        if self.fusion_batch_size < 0:
            raise ValueError(f"fusion_batch_size={self.fusion_batch_size} must be >= 0 (0: the whole batch)")
        for name in LOSS_TERMS:
            if getattr(self, f"{name}_loss_weight") < 0:
                raise ValueError(f"{name}_loss_weight must be >= 0")
        super().__post_init__(**kwargs)

    def loss_weight(self, term: str) -> float:
        """The weight of loss term `term` (one of `LOSS_TERMS`)."""
        return getattr(self, f"{term}_loss_weight")

    def to_dict(self) -> dict:
        """Only the pre-training settings (none of PreTrainedConfig's generic fields: this is no model of its own)."""
        output = {name: getattr(self, name) for name in PRETRAINING_FIELDS}
        output["model_type"] = self.model_type
        output["transformers_version"] = transformers.__version__  # the nesting config's to_dict deletes it
        return output


# The fields WVLPPreTrainingConfig adds to PreTrainedConfig's: what older, flat config.json files hold at top level.
PRETRAINING_FIELDS = tuple(
    f.name
    for f in dataclasses.fields(WVLPPreTrainingConfig)
    if f.name not in {base.name for base in dataclasses.fields(PreTrainedConfig)}
)


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


def resolve_language_model_id(language_model_id: str | None, kwargs: dict) -> str | None:
    """A config's `language_model_id`, taking over the `language_model_path` older versions saved (popped from
    `kwargs`): a Hub id carries over; a machine path (absolute, or a folder on this disk) is dropped with a warning,
    since it names nothing on another machine. An absolute path given as the id itself is refused."""
    legacy = kwargs.pop("language_model_path", None)
    if legacy and (os.path.isabs(os.path.expanduser(legacy)) or os.path.exists(legacy)):
        logger.warning(
            f"ignoring the legacy language_model_path={legacy!r}: it is a machine path. Attach the frozen LM with "
            "model.attach_language_model(...), or set language_model_id to its Hub id"
        )
        legacy = None
    language_model_id = language_model_id or legacy
    if language_model_id and os.path.isabs(os.path.expanduser(language_model_id)):
        raise ValueError(
            f"language_model_id={language_model_id!r} is a machine path: record the LM's Hub id "
            "(e.g. HuggingFaceTB/SmolLM2-135M-Instruct) and attach a local copy with attach_language_model(...)"
        )
    return language_model_id


@strict
class WVLPConfig(PreTrainedConfig):
    r"""
    Configuration of a WVLP model: an image tower, a text tower unified with the fusion encoder, the ITC projections,
    temperature, ITM and MLM heads, and the optional image-to-prompt bridge. It holds the architecture only; the
    pre-training settings (teacher momentum, queues, loss weights) live in `pretraining_config`, which
    `WVLPForPreTraining` owns. The pre-training objective is described in README.md, "Pre-training objective".

    Args:
        vision_config (`dict | PreTrainedConfig`, *optional*):
            The image tower: a `WVLPEfficientNetLiteConfig` (the default) or the config of a transformers vision
            backbone with a `hidden_size` (vit, deit, ...), given by `model_type`.
        text_config (`dict | WVLPTextConfig`, *optional*):
            The text tower, whose upper layers are the fusion encoder.
        embed_dim (`int`, *optional*, defaults to 256):
            Width of the projected, L2-normalised image and text embeddings that ITC compares.
        fusion_layer (`int`, *optional*, defaults to 3):
            Text layers with index >= `fusion_layer` cross-attend to the image tokens in fusion mode (ITM, MLM);
            in [0, `text_config.num_hidden_layers`).
        temperature (`float | int`, *optional*, defaults to 0.07):
            Initial value of the learnable softmax temperature of the contrastive losses.
        temperature_min (`float | int`, *optional*, defaults to 0.001):
            Lower clamp of the temperature.
        temperature_max (`float | int`, *optional*, defaults to 0.5):
            Upper clamp of the temperature.
        initializer_range (`float | int`, *optional*, defaults to 0.02):
            Standard deviation of the normal init of linear and embedding weights.
        tie_word_embeddings (`bool`, *optional*, defaults to `True`):
            Whether the MLM decoder shares the word-embedding matrix.
        prompt_bridge (`bool`, *optional*, defaults to `False`):
            Whether the model has the image-to-prompt bridge (P-Former stage 2): learnable queries that read the
            image tokens and become soft prompts for a frozen causal LM.
        bridge_num_prompts (`int`, *optional*, defaults to 32):
            Number of soft prompts (queries) the bridge produces.
        bridge_num_layers (`int`, *optional*, defaults to 2):
            Number of bridge layers (self-attention, cross-attention to the image tokens, MLP).
        bridge_prompt_dim (`int`, *optional*, defaults to 576):
            Width of the prompts: the frozen LM's hidden size (SmolLM2-135M: 576).
        language_model_id (`str`, *optional*):
            A stable name of the frozen LM the bridge was trained for, such as the Hub id
            `"HuggingFaceTB/SmolLM2-135M-Instruct"`; `generate_description` loads it when no LM is attached. Never a
            machine path: attach a local copy with `attach_language_model(...)` instead.
        pretraining_config (`dict | WVLPPreTrainingConfig`, *optional*):
            Pre-training settings, set by `WVLPForPreTraining` and absent from published models. Configs saved by
            older versions hold these fields at top level; they are folded in here when loaded.
    """

    model_type = "wvlp"
    sub_configs = {"vision_config": WVLPEfficientNetLiteConfig, "text_config": WVLPTextConfig}

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    embed_dim: int = 256
    fusion_layer: int = 3  # text layers >= fusion_layer get cross-attention to image tokens in fusion mode
    temperature: float | int = 0.07
    temperature_min: float | int = 0.001
    temperature_max: float | int = 0.5
    initializer_range: float | int = 0.02
    tie_word_embeddings: bool = True
    # Image-to-prompt bridge (P-Former stage 2): learnable queries -> K soft prompts for a frozen causal LM.
    # Off by default; the frozen LM (and P-Former) are attached at training time, never saved with the model.
    prompt_bridge: bool = False
    bridge_num_prompts: int = 32
    bridge_num_layers: int = 2
    bridge_prompt_dim: int = 576  # the frozen LM's hidden size (SmolLM2-135M: 576)
    # a stable name (Hub id) that generate_description loads when no LM is attached
    language_model_id: str | None = None
    pretraining_config: dict | PreTrainedConfig | None = None

    def __post_init__(self, **kwargs):
        self.vision_config = _resolve_vision_config(self.vision_config)
        if not isinstance(self.text_config, PreTrainedConfig):
            self.text_config = WVLPTextConfig(**(self.text_config or {}))
        # Older configs (and flat overrides) hold the pre-training settings at top level: fold them in.
        flat = {name: kwargs.pop(name) for name in PRETRAINING_FIELDS if name in kwargs}
        if flat or isinstance(self.pretraining_config, dict):
            nested = self.pretraining_config or {}
            nested = nested.to_dict() if isinstance(nested, PreTrainedConfig) else dict(nested)
            self.pretraining_config = WVLPPreTrainingConfig(**{**nested, **flat})
        self.language_model_id = resolve_language_model_id(self.language_model_id, kwargs)
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
        for name in ("bridge_num_prompts", "bridge_num_layers", "bridge_prompt_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        pretraining = self.pretraining_config
        if (
            pretraining is not None
            and not self.prompt_bridge
            and (pretraining.generation_loss_weight > 0 or pretraining.pformer_alignment_loss_weight > 0)
        ):
            raise ValueError(
                "generation_loss_weight / pformer_alignment_loss_weight > 0 need the image-to-prompt bridge: "
                "set prompt_bridge=True"
            )
        super().__post_init__(**kwargs)

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs) -> "WVLPConfig":
        """As `PreTrainedConfig.from_dict`, with pre-training overrides (`from_pretrained(path, queue_size=0)` or
        `pretraining_config={...}`) merged into the saved pre-training settings, flat older ones included, instead of
        being dropped or replacing them whole."""
        config_dict = dict(config_dict)
        saved_flat = {name: config_dict.pop(name) for name in PRETRAINING_FIELDS if name in config_dict}
        override_flat = {name: kwargs.pop(name) for name in PRETRAINING_FIELDS if name in kwargs}
        override_nested = kwargs.pop("pretraining_config", None)
        if saved_flat or override_flat or override_nested is not None:
            merged = {}
            for part in (config_dict.get("pretraining_config"), saved_flat, override_nested, override_flat):
                merged.update(part.to_dict() if isinstance(part, PreTrainedConfig) else part or {})
            config_dict["pretraining_config"] = merged
        if "language_model_path" in kwargs:
            config_dict["language_model_path"] = kwargs.pop("language_model_path")
        return super().from_dict(config_dict, **kwargs)

    def to_dict(self) -> dict:
        output = super().to_dict()
        if output.get("pretraining_config") is None:  # a published config.json names no training state at all
            output.pop("pretraining_config", None)
        return output

    @property
    def vision_hidden_size(self) -> int:
        """Width of the image tokens the fusion layers attend to."""
        return self.vision_config.hidden_size


__all__ = ["LOSS_TERMS", "WVLPConfig", "WVLPEfficientNetLiteConfig", "WVLPPreTrainingConfig", "WVLPTextConfig"]

"""Configuration of the P-Former: a text-only encoder that predicts the soft prompt a frozen LM needs to say a sentence."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from .configuration_wvlp import WVLPTextConfig, resolve_language_model_id


@strict
class PFormerConfig(PreTrainedConfig):
    r"""
    P-Former (Jian et al., NeurIPS 2023, "decoupled language pre-training"): a BERT-style encoder (MiniLM by default)
    maps a sentence to `num_prompts` vectors in the frozen LM's input-embedding space (`prompt_dim` wide).

    The frozen LM is never part of the P-Former's weights: it is attached (`attach_language_model`) or passed in, else
    loaded by its Hub id `language_model_id`.
    Loss = lm_loss_weight * lm + contrastive_loss_weight * self-contrastive + vocab_loss_weight * nearest-token pull.

    Args:
        text_config (`dict | WVLPTextConfig`, *optional*):
            The text-only encoder (WVLP's text tower without cross-attention).
        num_prompts (`int`, *optional*, defaults to 32):
            Number of soft-prompt vectors per sentence.
        prompt_dim (`int`, *optional*, defaults to 576):
            Width of the prompts: the frozen LM's hidden size (SmolLM2-135M: 576).
        language_model_id (`str`, *optional*):
            A stable name (Hub id) of the frozen LM, loaded when none is attached; never a machine path.
        embed_dim (`int`, *optional*, defaults to 256):
            Width of the L2-normalised sentence embedding of the self-contrastive loss.
        temperature (`float | int`, *optional*, defaults to 0.07):
            Initial learnable temperature of the self-contrastive loss (clamped to [0.001, 0.5]).
        label_smoothing (`float | int`, *optional*, defaults to 0.1):
            Label smoothing of the self-contrastive cross-entropy; in [0, 1).
        mask_probability (`float | int`, *optional*, defaults to 0.25):
            Input noise: this share of the real, non-special encoder tokens becomes [MASK] in training (reference:
            25%); in [0, 1).
        mask_token_id (`int`, *optional*, defaults to 103):
            The encoder tokenizer's [MASK] id (BERT uncased).
        cls_token_id (`int`, *optional*, defaults to 101):
            The encoder tokenizer's [CLS] id, never masked.
        sep_token_id (`int`, *optional*, defaults to 102):
            The encoder tokenizer's [SEP] id, never masked.
        lm_loss_weight (`float | int`, *optional*, defaults to 1.0):
            Weight of the frozen LM's loss of regenerating the sentence from its prompts.
        contrastive_loss_weight (`float | int`, *optional*, defaults to 1.0):
            Weight of the self-contrastive (SimCSE-style) loss between two noisy views of each sentence.
        vocab_loss_weight (`float | int`, *optional*, defaults to 1.0):
            Weight of the pull of each prompt vector to its nearest LM vocabulary embedding.
        initializer_range (`float | int`, *optional*, defaults to 0.02):
            Standard deviation of the normal init of linear and embedding weights.
    """

    model_type = "wvlp_pformer"
    sub_configs = {"text_config": WVLPTextConfig}

    text_config: dict | PreTrainedConfig | None = None
    num_prompts: int = 32
    prompt_dim: int = 576  # the frozen LM's hidden size (SmolLM2-135M: 576)
    language_model_id: str | None = None
    embed_dim: int = 256  # width of the self-contrastive sentence embedding
    temperature: float | int = 0.07
    label_smoothing: float | int = 0.1
    # Input noise: this share of the non-special encoder tokens becomes [MASK] in training (reference: 25%).
    mask_probability: float | int = 0.25
    mask_token_id: int = 103  # BERT uncased [MASK]
    cls_token_id: int = 101
    sep_token_id: int = 102
    lm_loss_weight: float | int = 1.0
    contrastive_loss_weight: float | int = 1.0
    vocab_loss_weight: float | int = 1.0
    initializer_range: float | int = 0.02

    def __post_init__(self, **kwargs):
        if not isinstance(self.text_config, PreTrainedConfig):
            self.text_config = WVLPTextConfig(**(self.text_config or {}))
        self.language_model_id = resolve_language_model_id(self.language_model_id, kwargs)
        for name in ("num_prompts", "prompt_dim", "embed_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if not 0.0 <= self.mask_probability < 1.0:
            raise ValueError(f"mask_probability={self.mask_probability} must be in [0, 1)")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing={self.label_smoothing} must be in [0, 1)")
        if self.temperature <= 0:
            raise ValueError(f"temperature={self.temperature} must be > 0")
        for name in ("lm", "contrastive", "vocab"):
            if getattr(self, f"{name}_loss_weight") < 0:
                raise ValueError(f"{name}_loss_weight must be >= 0")
        super().__post_init__(**kwargs)


__all__ = ["PFormerConfig"]

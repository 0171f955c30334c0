"""Configuration of the P-Former: a text-only encoder that predicts the soft prompt a frozen LM needs to say a sentence."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from .configuration_wvlp import WVLPTextConfig


@strict
class PFormerConfig(PreTrainedConfig):
    r"""
    P-Former (Jian et al., NeurIPS 2023, "decoupled language pre-training"): a BERT-style encoder (MiniLM by default)
    maps a sentence to `num_prompts` vectors in the frozen LM's input-embedding space (`prompt_dim` wide).

    The frozen LM is never part of the P-Former's weights: it is passed in, or loaded from `language_model_path`.
    Loss = lm_loss_weight * lm + contrastive_loss_weight * self-contrastive + vocab_loss_weight * nearest-token pull.
    """

    model_type = "wvlp_pformer"
    sub_configs = {"text_config": WVLPTextConfig}

    text_config: dict | PreTrainedConfig | None = None
    num_prompts: int = 32
    prompt_dim: int = 576  # the frozen LM's hidden size (SmolLM2-135M: 576)
    language_model_path: str | None = None
    embed_dim: int = 256  # width of the self-contrastive sentence embedding
    temperature: float = 0.07
    label_smoothing: float = 0.1
    # Input noise: this share of the non-special encoder tokens becomes [MASK] in training (reference: 25%).
    mask_probability: float = 0.25
    mask_token_id: int = 103  # BERT uncased [MASK]
    cls_token_id: int = 101
    sep_token_id: int = 102
    lm_loss_weight: float = 1.0
    contrastive_loss_weight: float = 1.0
    vocab_loss_weight: float = 1.0
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        if not isinstance(self.text_config, PreTrainedConfig):
            self.text_config = WVLPTextConfig(**(self.text_config or {}))
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

    @property
    def fusion_layer(self) -> int:
        """The shared text tower builds cross-attention from this layer: none in the text-only P-Former."""
        return self.text_config.num_hidden_layers


__all__ = ["PFormerConfig"]

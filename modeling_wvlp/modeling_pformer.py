"""P-Former ("Bootstrapping Vision-Language Learning with Decoupled Language Pre-training", Jian et al. 2023).

A text-only encoder learns, for every sentence, the soft prompt from which a *frozen* causal LM regenerates it.
Reference implementation: yiren-jian/BLIText `lavis/models/blip2_models/pformer_opt.py` (loss = lm + contrastive + vq).
Layout: outputs -> PreTrainedModel -> model. The encoder is WVLP's text tower in text mode (MiniLM-initialised).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_pformer import PFormerConfig
from .modeling_bridge import freeze_language_model, generate_from_prompts, load_language_model, prompt_lm_loss
from .modeling_text import TextAttentionMixin, WVLPTemperature, WVLPTextTower, init_text_weights


@dataclass
class PFormerOutput(ModelOutput):
    r"""
    Output of `PFormerModel.forward` and `encode`: the prompts, the sentence embeddings and, with `return_loss`, the
    weighted total and each named loss term (a term is returned when its weight is > 0).

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned with `return_loss`):
            Sum of `<term>_loss_weight * <term>_loss` over the returned terms.
        lm_loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `lm_loss_weight > 0`):
            The frozen LM's causal-LM loss of each sentence after its prompts.
        contrastive_loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `contrastive_loss_weight > 0`):
            Self-contrastive loss between two noisy views of each sentence.
        vocab_loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `vocab_loss_weight > 0`):
            MSE of each prompt vector to its nearest LM vocabulary embedding.
        prompts (`torch.FloatTensor` of shape `(batch_size, num_prompts, prompt_dim)`):
            Soft prompts in the frozen LM's input-embedding space.
        text_embeds (`torch.FloatTensor` of shape `(batch_size, embed_dim)`):
            L2-normalised sentence embeddings of the self-contrastive loss.
    """

    loss: torch.FloatTensor | None = None
    lm_loss: torch.FloatTensor | None = None
    contrastive_loss: torch.FloatTensor | None = None
    vocab_loss: torch.FloatTensor | None = None
    prompts: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None


PFORMER_LOSS_TERMS = ("lm", "contrastive", "vocab")


class PFormerPreTrainedModel(TextAttentionMixin, PreTrainedModel):
    config: PFormerConfig
    base_model_prefix = "pformer"
    main_input_name = "input_ids"
    input_modalities = ("text",)
    _no_split_modules = ["WVLPTextLayer"]
    _supports_sdpa = True
    accepts_loss_kwargs = False  # per-batch means: the Trainer scales for gradient accumulation

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if not init_text_weights(module, self.config.initializer_range, self.config.temperature):
            super()._init_weights(module)


class PFormerModel(PFormerPreTrainedModel):
    """Sentence -> K soft prompts for a frozen LM (+ a contrastive sentence embedding); the LM is attached, not owned."""

    def __init__(self, config: PFormerConfig):
        super().__init__(config)
        hidden, k = config.text_config.hidden_size, config.num_prompts
        self.text_model = WVLPTextTower(config.text_config)  # text only: no cross-attention
        # Prompt head of the reference: pooled -> K x hidden -> Linear+Tanh -> LM width.
        self.prompt_proj = nn.Linear(hidden, k * hidden)
        self.prompt_pooler = nn.Linear(hidden, hidden)
        self.lm_proj = nn.Linear(hidden, config.prompt_dim)
        self.text_proj = nn.Linear(hidden, config.embed_dim)
        self.temp = WVLPTemperature(config.temperature, 0.001, 0.5)  # a fixed range, unlike WVLPConfig's
        self._language_model = None
        self.post_init()

    # ------------------------------------------------------------------ frozen LM (kept out of the module tree)
    def get_language_model(self) -> nn.Module:
        """The attached frozen LM, loaded by `config.language_model_id` on first use when none was attached."""
        if self._language_model is None:
            self.attach_language_model(load_language_model(self.config.language_model_id))
        return self._language_model

    def attach_language_model(self, language_model: nn.Module) -> "PFormerModel":
        """Attaches a frozen LM by reference: not a submodule, so never saved, moved by `.to()` or optimised."""
        # object.__setattr__ bypasses nn.Module registration on purpose.
        object.__setattr__(self, "_language_model", freeze_language_model(language_model))
        return self

    def train(self, mode: bool = True) -> "PFormerModel":
        super().train(mode)
        if self._language_model is not None:
            self._language_model.eval()  # frozen LM: no dropout, ever
        return self

    # ------------------------------------------------------------------ encoder
    def mask_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Input noise: replaces `mask_probability` of the real, non-special tokens by [MASK]."""
        c = self.config
        maskable = attention_mask.bool()
        for special in (c.cls_token_id, c.sep_token_id, c.text_config.pad_token_id):
            if special is not None:
                maskable &= input_ids != special
        chosen = (torch.rand(input_ids.shape, device=input_ids.device) < c.mask_probability) & maskable
        return input_ids.masked_fill(chosen, c.mask_token_id)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> PFormerOutput:
        """Prompts (B, K, prompt_dim) and L2-normalised sentence embeddings (B, embed_dim) of the given tokens."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        pooled = self.text_model.encode(input_ids, attention_mask).pooler_output
        batch, hidden = pooled.shape
        queries = self.prompt_proj(pooled).view(batch, self.config.num_prompts, hidden)
        prompts = self.lm_proj(torch.tanh(self.prompt_pooler(queries)))
        return PFormerOutput(prompts=prompts, text_embeds=F.normalize(self.text_proj(pooled), dim=-1))

    def get_prompts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The soft prompts of clean (unmasked) sentences: the reference prompts the image bridge is aligned to."""
        return self.encode(input_ids, attention_mask).prompts

    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        tokenizer=None,
        language_model: nn.Module | None = None,
        max_new_tokens: int = 32,
        do_sample: bool = False,
        **generate_kwargs,
    ) -> list[str]:
        """Decodes each sentence back from its prompts through the frozen LM (a reconstruction check)."""
        if tokenizer is None:
            raise ValueError("generate needs the LM's tokenizer (tokenizer=...)")
        lm = language_model if language_model is not None else self.get_language_model()
        prompts = self.get_prompts(input_ids, attention_mask)
        return generate_from_prompts(lm, tokenizer, prompts, max_new_tokens, do_sample, **generate_kwargs)

    # ------------------------------------------------------------------ losses
    def _weight(self, term: str) -> float:
        return getattr(self.config, f"{term}_loss_weight")

    def vocab_loss(self, prompts: torch.Tensor, language_model: nn.Module) -> torch.Tensor:
        """MSE between each prompt vector and its nearest (L2) LM vocabulary embedding, which is held fixed (VQ)."""
        vocab = language_model.get_input_embeddings().weight.detach().float()
        flat = prompts.reshape(-1, prompts.shape[-1]).float()
        with torch.no_grad():
            vocab_sq = (vocab * vocab).sum(1)
            # Chunks keep the (prompts x vocabulary) distance matrix small for 50k-token vocabularies.
            nearest = torch.cat([(vocab_sq[None] - 2 * chunk @ vocab.t()).argmin(1) for chunk in flat.split(256)])
        return F.mse_loss(flat, vocab[nearest])

    def contrastive_loss(self, view_a: torch.Tensor, view_b: torch.Tensor) -> torch.Tensor:
        """Self-contrastive (SimCSE-style) InfoNCE between two noisy views of each sentence, both directions."""
        logits = view_a.float() @ view_b.float().t() / self.temp()
        labels = torch.arange(logits.shape[0], device=logits.device)
        smoothing = self.config.label_smoothing
        return (
            F.cross_entropy(logits, labels, label_smoothing=smoothing)
            + F.cross_entropy(logits.t(), labels, label_smoothing=smoothing)
        ) / 2

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        lm_input_ids: torch.Tensor | None = None,
        lm_attention_mask: torch.Tensor | None = None,
        language_model: nn.Module | None = None,
        return_loss: bool | None = None,
    ) -> PFormerOutput:
        """Prompts of the sentences; with `return_loss` (default when `lm_input_ids` are given) every named loss term.

        input_ids: encoder (BERT) tokens; lm_input_ids: the same sentences in the LM's tokens, right-padded.
        In training mode the encoder input is noised by [MASK]ing and the contrastive term uses two noisy views.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return_loss = lm_input_ids is not None if return_loss is None else return_loss
        noisy = self.training and self.config.mask_probability > 0
        view = self.encode(self.mask_inputs(input_ids, attention_mask) if noisy else input_ids, attention_mask)
        if not return_loss:
            return view
        if lm_input_ids is None:
            raise ValueError("return_loss needs lm_input_ids (the sentences tokenised by the frozen LM's tokenizer)")
        lm = language_model if language_model is not None else self.get_language_model()
        terms = {}
        if self._weight("lm") > 0:
            terms["lm"] = prompt_lm_loss(lm, view.prompts, lm_input_ids, lm_attention_mask)
        if self._weight("contrastive") > 0:
            # Second view: independent [MASK] noise and dropout (in eval mode both views coincide).
            other = self.encode(self.mask_inputs(input_ids, attention_mask) if noisy else input_ids, attention_mask)
            terms["contrastive"] = self.contrastive_loss(view.text_embeds, other.text_embeds)
        if self._weight("vocab") > 0:
            terms["vocab"] = self.vocab_loss(view.prompts, lm)
        total = sum(self._weight(name) * value for name, value in terms.items())
        return PFormerOutput(
            loss=total,
            prompts=view.prompts,
            text_embeds=view.text_embeds,
            **{f"{name}_loss": value for name, value in terms.items()},
        )


__all__ = ["PFormerModel", "PFormerOutput", "PFormerPreTrainedModel"]

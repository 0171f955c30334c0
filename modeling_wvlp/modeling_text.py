"""The text blocks shared by the WVLP model, its prompt bridge and the P-Former: embeddings, attention, the layer
(self-attention, optional cross-attention to image tokens, MLP), the text tower, the MLM head, the temperature and
their weight init. Shipped with saved models as remote code: imports only torch, transformers and sibling modules.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput

from .configuration_wvlp import WVLPTextConfig


@dataclass
class WVLPTextOutput(ModelOutput):
    r"""
    Text-mode output of `WVLPTextTower.encode` (and of `WVLPModel.get_text_features`).

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, sequence_length, hidden_size)`, *optional*):
            Final hidden states; None when `encode` stopped at the fusion layer (`stop_at_fusion=True`).
        fusion_input (`torch.FloatTensor` of shape `(batch_size, sequence_length, hidden_size)`, *optional*):
            The hidden states entering layer `fusion_layer`, from which `fuse` runs fusion mode; None in a text-only
            tower.
        pooler_output (`torch.FloatTensor`, *optional*):
            The pooled token `(batch_size, hidden_size)` (mean or [CLS]); from `get_text_features`, the L2-normalised
            projected embedding `(batch_size, embed_dim)`. None when `encode` stopped at the fusion layer.
    """

    last_hidden_state: torch.FloatTensor | None = None
    fusion_input: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference attention (softmax in fp32); SDPA is used when the config selects it."""
    attn_weights = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = F.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = F.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
    return attn_output, attn_weights


def extended_attention_mask(attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """(B, K) 1/0 key mask -> additive (B, 1, 1, K) mask."""
    if attention_mask is None:
        return None
    mask = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - mask) * torch.finfo(dtype).min


def follow_attn_implementation(config, requested: str | dict | None = None) -> None:
    """Gives `config.text_config` the attention implementation (eager, sdpa, ...) resolved for the composite `config`.

    transformers resolves it on a model's own config, and on a sub-config only through a sub-model (a PreTrainedModel
    child, like a transformers vision backbone) or when it is passed at load time (`attn_implementation=...`, set
    recursively). The text tower is a plain module, so its config follows here: always for a plain string request,
    otherwise only when nothing was chosen for it (a dict request may name `text_config` itself).
    """
    text_config = config.text_config
    if isinstance(requested, dict):
        if "text_config" in requested:
            text_config._attn_implementation_internal = requested["text_config"]
        return
    if requested is not None or text_config._attn_implementation is None:
        text_config._attn_implementation_internal = config._attn_implementation


class TextAttentionMixin:
    """For a `PreTrainedModel` whose config has a `text_config` read by plain-module text blocks: keeps that text
    config's attention implementation on the model's, at construction and on `set_attn_implementation`."""

    def __init__(self, config, *inputs, **kwargs):
        super().__init__(config, *inputs, **kwargs)
        follow_attn_implementation(self.config)

    def set_attn_implementation(self, attn_implementation: str | dict) -> None:
        super().set_attn_implementation(attn_implementation)
        follow_attn_implementation(self.config, attn_implementation)


class WVLPAttention(nn.Module):
    """Multi-head attention; keys/values come from `context` (image tokens) for cross-attention, else from the input.

    Args:
        text_config (`WVLPTextConfig`): the tower's sizes, dropout and `_attn_implementation` (eager, sdpa, ...).
        kv_dim (`int`, *optional*): width of the `context` keys and values are computed from (cross-attention);
            None for self-attention.
    """

    def __init__(self, text_config: WVLPTextConfig, kv_dim: int | None = None):
        super().__init__()
        self.config = text_config
        self.num_heads = text_config.num_attention_heads
        self.head_dim = text_config.hidden_size // self.num_heads
        self.scaling = self.head_dim**-0.5
        self.dropout = text_config.attention_probs_dropout_prob
        self.is_causal = False
        hidden, context = text_config.hidden_size, kv_dim or text_config.hidden_size
        self.q_proj = nn.Linear(hidden, hidden)
        self.k_proj = nn.Linear(context, hidden)
        self.v_proj = nn.Linear(context, hidden)
        self.o_proj = nn.Linear(hidden, hidden)
        # Cross-attention starts as a no-op (see WVLPTextLayer); read by WVLPPreTrainedModel._init_weights.
        self.o_proj.zero_init = kv_dim is not None

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        context = hidden_states if context is None else context
        batch, length, _ = hidden_states.shape
        query = self.q_proj(hidden_states).view(batch, length, -1, self.head_dim).transpose(1, 2)
        key = self.k_proj(context).view(batch, context.shape[1], -1, self.head_dim).transpose(1, 2)
        value = self.v_proj(context).view(batch, context.shape[1], -1, self.head_dim).transpose(1, 2)
        attention = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        output, _ = attention(
            self,
            query,
            key,
            value,
            attention_mask,
            scaling=self.scaling,
            dropout=self.dropout if self.training else 0.0,
            is_causal=False,
        )
        return self.o_proj(output.reshape(batch, length, -1))


class WVLPTextLayer(GradientCheckpointingLayer):
    """A post-LN BERT layer; fusion layers add a pre-LN cross-attention whose output projection starts at zero.

    Zero-initialised cross-attention makes fusion mode equal text mode at initialisation, so the pre-trained text
    weights are not disturbed by the new parameters.

    Args:
        text_config (`WVLPTextConfig`): the tower's sizes.
        cross_attention_dim (`int`, *optional*): width of the image tokens; the layer has cross-attention exactly
            when it is given.
    """

    def __init__(self, text_config: WVLPTextConfig, cross_attention_dim: int | None = None):
        super().__init__()
        hidden = text_config.hidden_size
        self.self_attn = WVLPAttention(text_config)
        self.self_attn_layer_norm = nn.LayerNorm(hidden, eps=text_config.layer_norm_eps)
        self.has_cross_attention = cross_attention_dim is not None
        if self.has_cross_attention:
            self.cross_attn_layer_norm = nn.LayerNorm(hidden, eps=text_config.layer_norm_eps)
            self.cross_attn = WVLPAttention(text_config, kv_dim=cross_attention_dim)
        self.fc1 = nn.Linear(hidden, text_config.intermediate_size)
        self.fc2 = nn.Linear(text_config.intermediate_size, hidden)
        self.activation = ACT2FN[text_config.hidden_act]
        self.final_layer_norm = nn.LayerNorm(hidden, eps=text_config.layer_norm_eps)
        self.dropout = nn.Dropout(text_config.hidden_dropout_prob)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        image_tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        attended = self.self_attn(hidden_states, attention_mask)
        hidden_states = self.self_attn_layer_norm(hidden_states + self.dropout(attended))
        if image_tokens is not None and self.has_cross_attention:
            attended = self.cross_attn(self.cross_attn_layer_norm(hidden_states), context=image_tokens)
            hidden_states = hidden_states + self.dropout(attended)
        mlp = self.fc2(self.activation(self.fc1(hidden_states)))
        return self.final_layer_norm(hidden_states + self.dropout(mlp))


class WVLPTextEmbeddings(nn.Module):
    """Word + position + token-type embeddings (BERT)."""

    def __init__(self, config: WVLPTextConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        length, max_length = input_ids.shape[1], self.position_embeddings.num_embeddings
        if length > max_length:
            raise ValueError(f"input_ids has {length} tokens; text_config.max_position_embeddings is {max_length}")
        embeddings = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(torch.arange(length, device=input_ids.device)[None])
            + self.token_type_embeddings(torch.zeros_like(input_ids))
        )
        return self.dropout(self.layer_norm(embeddings))


class WVLPMLMHead(nn.Module):
    """BERT prediction head; the decoder weight is tied to the word embeddings when `tie_word_embeddings`."""

    def __init__(self, config: WVLPTextConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = ACT2FN[config.hidden_act]
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.layer_norm(self.activation(self.dense(hidden_states))))


class WVLPTemperature(nn.Module):
    """The learnable softmax temperature, clamped to [minimum, maximum] when read.

    A module rather than a bare parameter: PEFT's `modules_to_save` can keep a module trainable, not a parameter.
    """

    def __init__(self, init: float, minimum: float, maximum: float):
        super().__init__()
        self.value = nn.Parameter(torch.tensor(float(init)))  # float(): configs accept a YAML int such as 1
        self.bounds = (minimum, maximum)

    def forward(self) -> torch.Tensor:
        return self.value.clamp(*self.bounds)


@torch.no_grad()
def init_text_weights(module: nn.Module, std: float, temperature: float) -> bool:
    """BERT-style init of a Linear (zero where marked `zero_init`), Embedding, LayerNorm or the temperature.

    Returns False for any other module, which the caller initialises itself.
    """
    if isinstance(module, nn.Linear):
        init.normal_(module.weight, mean=0.0, std=0.0 if getattr(module, "zero_init", False) else std)
        if module.bias is not None:
            init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        init.normal_(module.weight, mean=0.0, std=std)
    elif isinstance(module, nn.LayerNorm):
        init.ones_(module.weight)
        init.zeros_(module.bias)
    elif isinstance(module, WVLPTemperature):
        init.constant_(module.value, temperature)
    else:
        return False
    return True


class WVLPTextTower(nn.Module):
    """One BERT-style stack, two modes: `encode` (text only) and `fuse` (upper layers cross-attend to image tokens).

    Args:
        text_config (`WVLPTextConfig`): the tower's sizes and pooling.
        fusion_layer (`int`, *optional*): layers with index >= `fusion_layer` carry cross-attention; None (a
            text-only tower, like the P-Former's) means no layer does.
        cross_attention_dim (`int`, *optional*): width of the image tokens; needed when `fusion_layer` is given.
    """

    def __init__(
        self, text_config: WVLPTextConfig, fusion_layer: int | None = None, cross_attention_dim: int | None = None
    ):
        super().__init__()
        num_layers = text_config.num_hidden_layers
        if fusion_layer is not None and cross_attention_dim is None:
            raise ValueError("WVLPTextTower: fusion_layer needs cross_attention_dim (the width of the image tokens)")
        self.fusion_layer = num_layers if fusion_layer is None else fusion_layer
        self.pooling = text_config.pooling
        self.embeddings = WVLPTextEmbeddings(text_config)
        self.layers = nn.ModuleList(
            WVLPTextLayer(text_config, cross_attention_dim if i >= self.fusion_layer else None)
            for i in range(num_layers)
        )

    def encode(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, stop_at_fusion: bool = False
    ) -> WVLPTextOutput:
        """Text mode. `fusion_input` (the hidden states entering layer `fusion_layer`) lets `fuse` skip the lower layers;
        `stop_at_fusion` returns only that (no pooled output), for inputs that only feed the fusion encoder."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden_states = self.embeddings(input_ids)
        mask = extended_attention_mask(attention_mask, hidden_states.dtype)
        fusion_input = None
        for i, layer in enumerate(self.layers):
            if i == self.fusion_layer:
                fusion_input = hidden_states
                if stop_at_fusion:
                    return WVLPTextOutput(fusion_input=fusion_input)
            hidden_states = layer(hidden_states, mask)
        if self.pooling == "cls":
            pooled = hidden_states[:, 0]
        else:
            weights = attention_mask[..., None].to(hidden_states.dtype)
            pooled = (hidden_states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return WVLPTextOutput(last_hidden_state=hidden_states, fusion_input=fusion_input, pooler_output=pooled)

    def fuse(
        self, fusion_input: torch.Tensor, attention_mask: torch.Tensor, image_tokens: torch.Tensor
    ) -> torch.Tensor:
        """Fusion mode from layer `fusion_layer` upward; returns the multimodal hidden states."""
        mask = extended_attention_mask(attention_mask, fusion_input.dtype)
        hidden_states = fusion_input
        for layer in self.layers[self.fusion_layer :]:
            hidden_states = layer(hidden_states, mask, image_tokens)
        return hidden_states


__all__ = [
    "WVLPAttention",
    "WVLPMLMHead",
    "WVLPTemperature",
    "WVLPTextEmbeddings",
    "WVLPTextLayer",
    "WVLPTextOutput",
    "WVLPTextTower",
    "eager_attention_forward",
    "extended_attention_mask",
    "TextAttentionMixin",
    "follow_attn_implementation",
    "init_text_weights",
]

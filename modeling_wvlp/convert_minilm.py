"""Converts a BERT checkpoint (the packaged all-MiniLM-L6-v2) into the WVLP text tower's names."""

import re
from pathlib import Path

import torch
from safetensors.torch import load_file

from .configuration_wvlp import WVLPTextConfig

_BERT_TO_WVLP = (
    (r"^embeddings\.LayerNorm\.", "embeddings.layer_norm."),
    (r"^embeddings\.(word|position|token_type)_embeddings\.", r"embeddings.\1_embeddings."),
    (r"^encoder\.layer\.(\d+)\.attention\.self\.query\.", r"layers.\1.self_attn.q_proj."),
    (r"^encoder\.layer\.(\d+)\.attention\.self\.key\.", r"layers.\1.self_attn.k_proj."),
    (r"^encoder\.layer\.(\d+)\.attention\.self\.value\.", r"layers.\1.self_attn.v_proj."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"layers.\1.self_attn.o_proj."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.", r"layers.\1.self_attn_layer_norm."),
    (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", r"layers.\1.fc1."),
    (r"^encoder\.layer\.(\d+)\.output\.dense\.", r"layers.\1.fc2."),
    (r"^encoder\.layer\.(\d+)\.output\.LayerNorm\.", r"layers.\1.final_layer_norm."),
)
# The BERT pooler and the position-id buffer have no counterpart: WVLP pools by mean or [CLS] itself.
_DROPPED = re.compile(r"^(pooler\.|embeddings\.position_ids$)")


def convert_bert_state_dict(bert_state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Renames `BertModel` keys to `WVLPTextTower` keys; unknown keys raise ValueError."""
    converted, unknown = {}, []
    for key, tensor in bert_state_dict.items():
        key = key.removeprefix("bert.")
        if _DROPPED.match(key):
            continue
        for pattern, replacement in _BERT_TO_WVLP:
            if re.match(pattern, key):
                converted[re.sub(pattern, replacement, key)] = tensor
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"BERT checkpoint keys with no WVLP text-tower counterpart: {unknown}")
    return converted


def text_config_from_bert(bert_config: dict, **overrides) -> WVLPTextConfig:
    """A `WVLPTextConfig` with the sizes of a BERT `config.json`."""
    fields = (
        "vocab_size hidden_size num_hidden_layers num_attention_heads intermediate_size hidden_act "
        "hidden_dropout_prob attention_probs_dropout_prob max_position_embeddings type_vocab_size "
        "layer_norm_eps pad_token_id"
    ).split()
    return WVLPTextConfig(**{name: bert_config[name] for name in fields if name in bert_config}, **overrides)


def load_bert_folder(folder: str | Path) -> dict[str, torch.Tensor]:
    """Reads `model.safetensors` of a BERT folder and converts it."""
    path = Path(folder) / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: expected a BERT checkpoint folder with model.safetensors")
    return convert_bert_state_dict(load_file(str(path)))

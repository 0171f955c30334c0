"""Image-to-prompt bridge and the frozen-LM helpers shared with the P-Former.

The bridge is a small Q-Former: `num_prompts` learnable queries self-attend, cross-attend to the image tokens and are
projected into the frozen LM's input-embedding space, where they act as a soft prompt (BLIP-2 / P-Former stage 2).
The frozen LM itself is never a submodule: it is attached by reference so it stays out of state dicts and optimisers.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .modeling_text import WVLPTextLayer


def freeze_language_model(language_model: nn.Module) -> nn.Module:
    """Puts `language_model` in eval mode with every parameter frozen; returns it."""
    if not hasattr(language_model, "get_input_embeddings"):
        raise TypeError(f"language_model must be a transformers causal LM, got {type(language_model).__name__}")
    language_model.requires_grad_(False)
    return language_model.eval()


def load_language_model(name: str | None, attribute: str = "language_model_id") -> nn.Module:
    """Loads a frozen causal LM by Hub id (or local folder); `attribute` names the config field it came from.

    Raises a clear error when there is no name, or when the name cannot be loaded (offline, unknown id): the fix is
    then to attach the LM, which no saved config ever points to by machine path.
    """
    if not name:
        raise ValueError(
            f"no language model: pass language_model=..., call attach_language_model(...), or set config.{attribute} "
            "to the LM's Hub id"
        )
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(name, dtype=torch.float32)
    except OSError as err:
        raise OSError(
            f"config.{attribute}={name!r} could not be loaded ({err}); attach the frozen LM with "
            "attach_language_model(...) (a local copy works offline)"
        ) from err
    return freeze_language_model(model)


def load_lm_tokenizer(name: str | None, attribute: str = "language_model_id"):
    """The LM's tokenizer from `name` (pad token defaulting to eos, so batched generation works)."""
    if not name:
        raise ValueError(
            f"no LM tokenizer: pass tokenizer=..., attach it with attach_language_model(lm, tokenizer), or set "
            f"config.{attribute} to the LM's Hub id"
        )
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except OSError as err:
        raise OSError(
            f"config.{attribute}={name!r}: its tokenizer could not be loaded ({err}); pass tokenizer=... or "
            "attach_language_model(lm, tokenizer)"
        ) from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def check_prompt_width(prompts: torch.Tensor, language_model: nn.Module) -> None:
    """Raises a clear error when the prompts do not live in the LM's input-embedding space."""
    width = language_model.get_input_embeddings().weight.shape[1]
    if prompts.shape[-1] != width:
        raise ValueError(
            f"prompts are {prompts.shape[-1]}-d but the language model's input embeddings are {width}-d: "
            "set prompt_dim to the LM's hidden size"
        )


def prompt_lm_loss(
    language_model: nn.Module,
    prompts: torch.Tensor,
    lm_input_ids: torch.Tensor,
    lm_attention_mask: torch.Tensor | None,
) -> torch.Tensor:
    """Causal-LM loss of the sentence tokens after the soft prompt; prompt and padding positions are ignored (-100).

    Sentences are right-padded, so the prompt is always followed directly by the first sentence token.
    """
    check_prompt_width(prompts, language_model)
    if lm_attention_mask is None:
        lm_attention_mask = torch.ones_like(lm_input_ids)
    batch, num_prompts = prompts.shape[:2]
    token_embeds = language_model.get_input_embeddings()(lm_input_ids)
    inputs_embeds = torch.cat([prompts.to(token_embeds.dtype), token_embeds], dim=1)
    prompt_mask = torch.ones(batch, num_prompts, dtype=lm_attention_mask.dtype, device=lm_attention_mask.device)
    attention_mask = torch.cat([prompt_mask, lm_attention_mask], dim=1)
    labels = torch.cat(
        [
            torch.full((batch, num_prompts), -100, device=lm_input_ids.device),
            lm_input_ids.masked_fill(lm_attention_mask == 0, -100),
        ],
        dim=1,
    )
    return language_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, labels=labels).loss


def prompt_token_nll(
    language_model: nn.Module,
    prompts: torch.Tensor,
    lm_input_ids: torch.Tensor,
    lm_attention_mask: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed negative log-likelihood of each row's sentence tokens after its prompt, and each row's token count."""
    check_prompt_width(prompts, language_model)
    if lm_attention_mask is None:
        lm_attention_mask = torch.ones_like(lm_input_ids)
    num_prompts = prompts.shape[1]
    token_embeds = language_model.get_input_embeddings()(lm_input_ids)
    inputs_embeds = torch.cat([prompts.to(token_embeds.dtype), token_embeds], dim=1)
    prompt_mask = torch.ones(prompts.shape[:2], dtype=lm_attention_mask.dtype, device=lm_attention_mask.device)
    logits = language_model(
        inputs_embeds=inputs_embeds, attention_mask=torch.cat([prompt_mask, lm_attention_mask], 1)
    ).logits
    # Position num_prompts-1+t predicts sentence token t.
    logits = logits[:, num_prompts - 1 : -1].float()
    nll = F.cross_entropy(logits.transpose(1, 2), lm_input_ids, reduction="none") * lm_attention_mask
    return nll.sum(1), lm_attention_mask.sum(1)


@torch.no_grad()
def generate_from_prompts(
    language_model: nn.Module,
    tokenizer,
    prompts: torch.Tensor,
    max_new_tokens: int = 32,
    do_sample: bool = False,
    **generate_kwargs,
) -> list[str]:
    """Decodes text from soft prompts with the frozen LM's `generate(inputs_embeds=...)`; one string per row."""
    check_prompt_width(prompts, language_model)
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 1")
    embeds = prompts.to(language_model.get_input_embeddings().weight.dtype)
    attention_mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    generate_kwargs.setdefault("pad_token_id", pad)
    if not do_sample:  # greedy: drop sampling knobs a generation_config may carry, so transformers does not warn
        generate_kwargs.update(temperature=None, top_p=None, top_k=None)
    output = language_model.generate(
        inputs_embeds=embeds,
        attention_mask=attention_mask,
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        **generate_kwargs,
    )
    # With only inputs_embeds, decoder-only generate returns just the new tokens.
    return [text.strip() for text in tokenizer.batch_decode(output, skip_special_tokens=True)]


class WVLPPromptBridge(nn.Module):
    """Learnable queries -> (self-attention, cross-attention to image tokens, MLP) x N -> K prompts for the frozen LM.

    The layers are the text tower's fusion layers (`WVLPTextLayer` with cross-attention, zero-initialised output), so
    the bridge starts image-independent and learns to read the image through the cross-attention.
    """

    def __init__(self, config):
        super().__init__()
        hidden = config.text_config.hidden_size
        self.num_prompts = config.bridge_num_prompts
        self.queries = nn.Embedding(config.bridge_num_prompts, hidden)
        self.layers = nn.ModuleList(
            WVLPTextLayer(config.text_config, cross_attention_dim=config.vision_hidden_size)
            for _ in range(config.bridge_num_layers)
        )
        self.layer_norm = nn.LayerNorm(hidden, eps=config.text_config.layer_norm_eps)
        self.lm_proj = nn.Linear(hidden, config.bridge_prompt_dim)

    def forward(self, image_tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, C_image) image tokens -> (B, K, prompt_dim) soft prompts."""
        hidden_states = self.queries.weight[None].expand(image_tokens.shape[0], -1, -1)
        for layer in self.layers:
            hidden_states = layer(hidden_states, None, image_tokens)
        return self.lm_proj(self.layer_norm(hidden_states))


__all__ = [
    "WVLPPromptBridge",
    "freeze_language_model",
    "generate_from_prompts",
    "load_language_model",
    "load_lm_tokenizer",
    "prompt_lm_loss",
    "prompt_token_nll",
]

"""Batched encoding of images and texts with a WVLP model (normalised embeddings, image tokens, tokenised text)."""

from collections.abc import Sequence

import torch

from wvlp.modeling import WVLPModel, WVLPProcessor


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's parameters."""
    return next(model.parameters()).device


def tokenize(processor: WVLPProcessor, texts: Sequence[str], max_length: int = 32) -> dict[str, torch.Tensor]:
    """`input_ids` and `attention_mask` (N, max_length) of `texts`, on the CPU."""
    if not len(texts):
        raise ValueError("texts is empty: nothing to encode")
    tokens = processor(text=list(texts), max_length=max_length)
    return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}


@torch.no_grad()
def text_embeddings(
    model: WVLPModel, processor: WVLPProcessor, texts: Sequence[str], batch_size: int = 256, max_length: int = 32
) -> torch.Tensor:
    """L2-normalised text embeddings (N, D), float32 on the CPU."""
    device, chunks = model_device(model), []
    for start in range(0, len(texts), batch_size):
        tokens = tokenize(processor, texts[start : start + batch_size], max_length)
        output = model.get_text_features(tokens["input_ids"].to(device), tokens["attention_mask"].to(device))
        chunks.append(output.pooler_output.float().cpu())
    if not chunks:
        raise ValueError("texts is empty: nothing to encode")
    return torch.cat(chunks)


@torch.no_grad()
def image_embeddings(
    model: WVLPModel, processor: WVLPProcessor, images: Sequence, batch_size: int = 128, return_tokens: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised image embeddings (N, D) float32 on the CPU; with `return_tokens`, also the image tokens (N, T, C).

    The tokens feed the ITM head when re-ranking retrieval candidates; they are kept in the model's dtype.
    """
    device, chunks, tokens = model_device(model), [], []
    for start in range(0, len(images), batch_size):
        pixels = processor.image_processor(list(images[start : start + batch_size]))["pixel_values"]
        output = model.get_image_features(pixels.to(device))
        chunks.append(output.pooler_output.float().cpu())
        if return_tokens:
            tokens.append(output.last_hidden_state.cpu())
    if not chunks:
        raise ValueError("images is empty: nothing to encode")
    embeddings = torch.cat(chunks)
    return (embeddings, torch.cat(tokens)) if return_tokens else embeddings


@torch.no_grad()
def itm_pair_scores(
    model: WVLPModel,
    image_tokens: torch.Tensor,
    text_tokens: dict[str, torch.Tensor],
    image_index: torch.Tensor,
    text_index: torch.Tensor,
    batch_size: int = 256,
) -> torch.Tensor:
    """ITM match probability of each (image_index[i], text_index[i]) pair, float32 on the CPU."""
    device, scores = model_device(model), []
    for start in range(0, len(image_index), batch_size):
        images = image_index[start : start + batch_size]
        texts = text_index[start : start + batch_size]
        scores.append(
            model.itm_score(
                text_tokens["input_ids"][texts].to(device),
                text_tokens["attention_mask"][texts].to(device),
                image_tokens=image_tokens[images].to(device),
            )
            .float()
            .cpu()
        )
    return torch.cat(scores) if scores else torch.zeros(0)

"""Zero-shot classification with a WVLP model: class-name prompt ensembles, top-k accuracy (open_clip style)."""

from collections.abc import Sequence

import numpy as np
import torch

from modeling_wvlp import WVLPModel, WVLPProcessor


@torch.no_grad()
def text_embeddings(model: WVLPModel, processor: WVLPProcessor, texts: Sequence[str], batch_size: int = 256,
                    max_length: int = 32) -> torch.Tensor:
    """L2-normalised text embeddings (N, D)."""
    chunks = []
    for start in range(0, len(texts), batch_size):
        tokens = processor(text=list(texts[start : start + batch_size]), max_length=max_length)
        chunks.append(model.get_text_features(tokens["input_ids"], tokens["attention_mask"]).pooler_output)
    return torch.cat(chunks).float()


@torch.no_grad()
def image_embeddings(model: WVLPModel, processor: WVLPProcessor, images: Sequence, batch_size: int = 128) -> torch.Tensor:
    """L2-normalised image embeddings (N, D)."""
    chunks = []
    for start in range(0, len(images), batch_size):
        pixels = processor.image_processor(list(images[start : start + batch_size]))["pixel_values"]
        chunks.append(model.get_image_features(pixels).pooler_output)
    return torch.cat(chunks).float()


@torch.no_grad()
def build_zero_shot_classifier(model: WVLPModel, processor: WVLPProcessor, classnames: Sequence[str],
                               templates: Sequence[str], max_length: int = 32) -> torch.Tensor:
    """One weight per class (C, D): the normalised mean of its normalised template embeddings."""
    texts = [template.format(name) for name in classnames for template in templates]
    embeddings = text_embeddings(model, processor, texts, max_length=max_length)
    weights = embeddings.view(len(classnames), len(templates), -1).mean(dim=1)
    return torch.nn.functional.normalize(weights, dim=-1)


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Fraction of rows whose label is among the top-k logits, for each k (k capped at the number of classes)."""
    ranked = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = ranked == labels[:, None]
    return {f"top{k}": hits[:, : min(k, logits.shape[1])].any(dim=1).float().mean().item() for k in ks}


def zero_shot_accuracy(model: WVLPModel, processor: WVLPProcessor, images: Sequence, labels: Sequence[int] | np.ndarray,
                       classnames: Sequence[str], templates: Sequence[str]) -> dict[str, float]:
    """Top-1/top-5 zero-shot accuracy of `images` against prompts built from `classnames`."""
    classifier = build_zero_shot_classifier(model, processor, classnames, templates)
    logits = image_embeddings(model, processor, images) @ classifier.t()
    return topk_accuracy(logits, torch.as_tensor(np.asarray(labels), dtype=torch.long))

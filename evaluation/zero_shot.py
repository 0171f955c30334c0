"""Zero-shot classification: class-name prompt ensembles and description ensembles, top-k, per-class, unseen classes.

An ensemble is the L2-normalised mean of the normalised text embeddings of one class (open_clip's
`build_zero_shot_classifier`): its templates filled with the class's prompt name, or its descriptions.
Seen/unseen accuracy (generalised zero-shot): every image is classified among all classes; `seen_top1` is the
top-1 accuracy over the images of seen classes, `unseen_top1` over those of `holdout` classes, `harmonic` their
harmonic mean.
"""

from collections.abc import Collection, Sequence

import numpy as np
import torch

from wvlp.evaluation.features import image_embeddings, text_embeddings
from wvlp.modeling import WVLPModel, WVLPProcessor


def class_ensembles(
    embeddings: torch.Tensor, labels: Sequence[int] | np.ndarray | torch.Tensor, num_classes: int
) -> torch.Tensor:
    """(C, D): per class, the normalised mean of its rows of `embeddings` (normalised first)."""
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if len(labels) != len(embeddings):
        raise ValueError(f"{len(embeddings)} embeddings but {len(labels)} labels")
    counts = torch.bincount(labels, minlength=num_classes)
    if len(counts) > num_classes or (labels < 0).any():
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got {labels.min().item()}..{labels.max().item()}")
    if (counts == 0).any():
        raise ValueError(
            f"classes {counts.eq(0).nonzero().squeeze(1).tolist()} have no text to build an ensemble from"
        )
    normalised = torch.nn.functional.normalize(embeddings.float(), dim=-1)
    sums = torch.zeros(num_classes, embeddings.shape[1]).index_add_(0, labels, normalised)
    return torch.nn.functional.normalize(sums / counts[:, None], dim=-1)


@torch.no_grad()
def build_zero_shot_classifier(
    model: WVLPModel,
    processor: WVLPProcessor,
    classnames: Sequence[str],
    templates: Sequence[str],
    max_length: int = 32,
) -> torch.Tensor:
    """One weight per class (C, D): the ensemble of its template prompts."""
    if not classnames or not templates:
        raise ValueError(f"need class names and templates, got {len(classnames)} names and {len(templates)} templates")
    texts = [template.format(name) for name in classnames for template in templates]
    embeddings = text_embeddings(model, processor, texts, max_length=max_length)
    return class_ensembles(embeddings, np.repeat(np.arange(len(classnames)), len(templates)), len(classnames))


@torch.no_grad()
def build_description_classifier(
    model: WVLPModel,
    processor: WVLPProcessor,
    texts: Sequence[str],
    labels: Sequence[int] | np.ndarray,
    num_classes: int,
    max_length: int = 32,
) -> torch.Tensor:
    """One weight per class (C, D): the ensemble of the class's descriptions."""
    return class_ensembles(text_embeddings(model, processor, texts, max_length=max_length), labels, num_classes)


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Fraction of rows whose label is among the top-k logits, for each k (k capped at the number of classes)."""
    ranked = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = ranked == labels[:, None]
    return {f"top{k}": hits[:, : min(k, logits.shape[1])].any(dim=1).float().mean().item() for k in ks}


def confusion_matrix(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts: row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(labels, np.int64), np.asarray(predictions, np.int64)), 1)
    return matrix


def per_class_accuracy(matrix: np.ndarray, classnames: Sequence[str]) -> dict[str, float | None]:
    """Top-1 accuracy of each class's images (None for a class without images), keyed by class name."""
    totals = matrix.sum(1)
    return {name: (float(matrix[i, i] / totals[i]) if totals[i] else None) for i, name in enumerate(classnames)}


def seen_unseen_accuracy(
    predictions: np.ndarray, labels: np.ndarray, holdout: Collection[int]
) -> dict[str, float | None]:
    """`seen_top1`, `unseen_top1` (None when a side has no image) and their `harmonic` mean."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    unseen = np.isin(labels, sorted(holdout))
    side = {
        name: (float(np.mean(predictions[mask] == labels[mask])) if mask.any() else None)
        for name, mask in (("seen_top1", ~unseen), ("unseen_top1", unseen))
    }
    s, u = side["seen_top1"], side["unseen_top1"]
    harmonic = None if s is None or u is None else (0.0 if s + u == 0 else 2 * s * u / (s + u))
    return {**side, "harmonic": harmonic}


def zero_shot_metrics(
    logits: torch.Tensor,
    labels: Sequence[int] | np.ndarray,
    classnames: Sequence[str],
    holdout: Collection[int] | None = None,
) -> tuple[dict, np.ndarray]:
    """The eval-JSON zero-shot block (top1, top5, per_class, seen/unseen/harmonic) and the confusion matrix."""
    labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if logits.shape != (len(labels_t), len(classnames)):
        raise ValueError(
            f"logits has shape {tuple(logits.shape)}, expected (images, classes) = {(len(labels_t), len(classnames))}"
        )
    predictions = logits.argmax(1).numpy()
    matrix = confusion_matrix(predictions, labels_t.numpy(), len(classnames))
    metrics = {**topk_accuracy(logits, labels_t), "per_class": per_class_accuracy(matrix, classnames)}
    if holdout:
        metrics.update(seen_unseen_accuracy(predictions, labels_t.numpy(), holdout))
    else:
        metrics.update(seen_top1=None, unseen_top1=None, harmonic=None)
    return metrics, matrix


def zero_shot_accuracy(
    model: WVLPModel,
    processor: WVLPProcessor,
    images: Sequence,
    labels: Sequence[int] | np.ndarray,
    classnames: Sequence[str],
    templates: Sequence[str],
) -> dict[str, float]:
    """Top-1/top-5 zero-shot accuracy of `images` against prompts built from `classnames`."""
    classifier = build_zero_shot_classifier(model, processor, classnames, templates)
    logits = image_embeddings(model, processor, images) @ classifier.t()
    return topk_accuracy(logits, torch.as_tensor(np.asarray(labels), dtype=torch.long))

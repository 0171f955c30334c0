"""Evaluation figures drawn from saved numbers (arrays / eval JSON side files), never by re-running a model."""

import json
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and in tests
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_confusion_matrix(
    matrix: np.ndarray | Sequence[Sequence[int]],
    classnames: Sequence[str],
    path: str | Path,
    normalize: bool = True,
    title: str = "zero-shot confusion matrix",
) -> Path:
    """PNG of a (C, C) confusion matrix (rows = true class); `normalize` shows each row as fractions."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] != len(classnames):
        raise ValueError(f"confusion matrix of shape {matrix.shape} does not match {len(classnames)} class names")
    shown = matrix / np.maximum(matrix.sum(1, keepdims=True), 1) if normalize else matrix
    size = max(4.0, 0.5 * len(classnames) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    ax.set_xticks(range(len(classnames)), classnames, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(classnames)), classnames, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if len(classnames) <= 20:  # numbers stay readable up to ~20 classes
        for (i, j), value in np.ndenumerate(shown):
            ax.text(
                j,
                i,
                f"{value:.2f}" if normalize else f"{int(value)}",
                ha="center",
                va="center",
                fontsize=6,
                color="white" if value > 0.5 * shown.max() else "black",
            )
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_retrieval_examples(
    examples: Sequence[dict] | str | Path, images: Sequence[Any], path: str | Path, top: int = 5
) -> Path:
    """PNG grid: each query text above its top images, correct ones framed green, wrong ones red.

    `examples` is the list written by `wvlp.evaluation.retrieval.retrieval_examples` (or a JSON file of it): dicts with
    `query`, `image_indices` and `correct`; `images[i]` is gallery image i (PIL image or array).
    """
    if isinstance(examples, (str, Path)):
        examples = json.loads(Path(examples).read_text())
    if not examples:
        raise ValueError("no retrieval examples to plot")
    fig, axes = plt.subplots(len(examples), top, figsize=(2 * top, 2.3 * len(examples)), squeeze=False)
    for row, example in enumerate(examples):
        for column in range(top):
            ax = axes[row, column]
            ax.set_xticks([])
            ax.set_yticks([])
            if column >= len(example["image_indices"]):
                ax.axis("off")
                continue
            image = np.asarray(images[example["image_indices"][column]])
            ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
            color = "green" if example["correct"][column] else "red"
            for spine in ax.spines.values():
                spine.set_edgecolor(color)
                spine.set_linewidth(4)
        query = textwrap.shorten(example["query"], 160, placeholder="...")
        # the title of the row's first image spans the row (no tight_layout, which would shrink the images for it)
        axes[row, 0].set_title("\n".join(textwrap.wrap(query, 16 * top)), loc="left", fontsize=8, pad=4)
    fig.subplots_adjust(
        left=0.02, right=0.98, bottom=0.02, top=1 - 0.45 / fig.get_figheight(), wspace=0.06, hspace=0.45
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

"""Linear probe: multinomial logistic regression on frozen image features, full-batch L-BFGS with a fixed budget.

Features are standardised with the train statistics; the L2 penalty and the iteration budget are fixed (no
hyper-parameter search), so the number is a cheap, reproducible supervised reference rather than a tuned optimum.
"""

from collections.abc import Sequence

import numpy as np
import torch

SINGLE_THREAD_BELOW = 4_000_000  # feature-matrix elements


def fit_logistic_regression(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    l2: float = 1e-4,
    max_iter: int = 100,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights (C, D) and bias (C,) minimising mean cross-entropy + `l2` * ||W||^2 by L-BFGS (`max_iter` steps)."""
    generator = torch.Generator().manual_seed(seed)
    weight = (
        0.01 * torch.randn(num_classes, features.shape[1], generator=generator, dtype=torch.float64)
    ).requires_grad_()
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe"
    )
    x, y = features.double(), labels.long()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ weight.T + bias, y) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def linear_probe(
    train_features: torch.Tensor,
    train_labels: Sequence[int] | np.ndarray,
    test_features: torch.Tensor,
    test_labels: Sequence[int] | np.ndarray,
    num_classes: int | None = None,
    l2: float = 1e-4,
    max_iter: int = 100,
) -> dict[str, float | int]:
    """Top-1 accuracy on the test features of a probe trained on the train features: `{"top1", "train_samples"}`."""
    train_y = torch.as_tensor(np.asarray(train_labels), dtype=torch.long)
    test_y = torch.as_tensor(np.asarray(test_labels), dtype=torch.long)
    if len(train_y) != len(train_features) or len(test_y) != len(test_features):
        raise ValueError(
            f"features and labels differ in length: train {len(train_features)} vs {len(train_y)}, "
            f"test {len(test_features)} vs {len(test_y)}"
        )
    if len(train_y) == 0 or len(test_y) == 0:
        raise ValueError("the linear probe needs train and test samples")
    num_classes = num_classes or int(max(train_y.max(), test_y.max())) + 1
    train_x, test_x = train_features.double(), test_features.double()
    mean, std = train_x.mean(0), train_x.std(0, unbiased=False).clamp_min(1e-6)
    threads = torch.get_num_threads()
    # L-BFGS on a small problem is hundreds of tiny ops: thread hand-offs cost more than they save (7x slower with 2
    # threads on a busy 2-core machine at 5000 x 256), so small probes run single-threaded.
    if train_x.numel() < SINGLE_THREAD_BELOW:
        torch.set_num_threads(1)
    try:
        weight, bias = fit_logistic_regression((train_x - mean) / std, train_y, num_classes, l2, max_iter)
    finally:
        torch.set_num_threads(threads)
    predictions = (((test_x - mean) / std) @ weight.T + bias).argmax(1)
    return {"top1": float((predictions == test_y).double().mean()), "train_samples": len(train_y)}

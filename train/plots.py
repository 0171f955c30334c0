"""Training plots from the Trainer's log history: one loss curve per named term, and the zero-shot learning curve."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_loss_curves(log_history: list[dict], folder: str | Path) -> list[Path]:
    """Writes `loss.png`, `itc_loss.png`, ... for every loss logged during training; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    terms = sorted(
        {k for entry in log_history for k in entry if k.endswith("loss") and not k.startswith(("eval_", "train_"))}
    )
    paths = []
    for term in terms:
        points = [(entry["step"], entry[term]) for entry in log_history if term in entry and "step" in entry]
        if not points:
            continue
        steps, values = zip(*points)
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
        ax.plot(steps, values, marker="o" if len(points) < 30 else None, linewidth=1.5)
        ax.set_xlabel("optimiser step")
        ax.set_ylabel(term)
        ax.set_title(term.replace("_", " "))
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = folder / f"{term}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def phase_changes(points: list[dict]) -> list[dict]:
    """The logged points at which the schedule's `phase` differs from the point before."""
    return [e for before, e in zip(points, points[1:]) if e.get("phase") != before.get("phase")]


def plot_zero_shot_curves(
    log_history: list[dict], folder: str | Path, metric: str = "eval_zero_shot_top1"
) -> Path | None:
    """Writes `zero_shot_curve.png`: `metric` against images seen and against training wall-clock, a dashed line where
    the logged `phase` changes; None when no point was logged (`run.zero_shot_every: 0`)."""
    points = [e for e in log_history if metric in e and "images_seen" in e and "train_seconds" in e]
    if not points:
        return None
    changes = phase_changes(points)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), dpi=100, sharey=True)
    for ax, axis, label in zip(axes, ("images_seen", "train_seconds"), ("images seen", "training wall-clock (s)")):
        ax.plot([e[axis] for e in points], [100 * e[metric] for e in points], marker="o", linewidth=1.5)
        for change in changes:
            ax.axvline(change[axis], linestyle="--", color="grey", linewidth=1)
            ax.annotate(str(change.get("phase")), (change[axis], 0.02), xycoords=("data", "axes fraction"), fontsize=8)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"{metric.removeprefix('eval_').replace('_', ' ')} (%)")
    fig.suptitle("zero-shot accuracy on the eval subset during training", fontsize=10)
    fig.tight_layout()
    path = Path(folder) / "zero_shot_curve.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path

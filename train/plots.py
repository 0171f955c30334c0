"""Loss curves from the Trainer's log history, one PNG per named term."""

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

"""Schedules at equal wall-clock: zero-shot top-1 against images seen and against training seconds, one run.

    python -m studies.schedules --corpus out/fashion-mnist/corpus --output out/schedules --seconds 180

Every arm trains `train/configs/fashion-mnist.yaml` as it was before this study (BASELINE), with the arm's overrides
(ARMS), for the same training wall-clock
(`run.max_train_seconds`, evaluations excluded) at a constant learning rate after a short warm-up, so each curve is
what that schedule reaches at any budget up to the limit. The curve is evaluated during training, through
`Trainer.log`, on a validation set held out of the training images (`data.validation_size`): the schedule of the
embedded default is chosen here, so the test split is never looked at. Writes `<output>/schedules.json`,
`<output>/schedules.png` and prints a markdown table of top-1 at fixed wall-clock points.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from wvlp.common.safe_io import RUN, remove_dir  # noqa: E402
from wvlp.demo import TRAIN_CONFIG  # noqa: E402

from studies.study import BASELINE, templates_corpus  # noqa: E402

# Locked text: the batch and lr of the calibration run in the issue; text lengths from the corpus (free once cached).
LOCKED = [
    "run.locked_text_steps=1000000",
    "training.per_device_train_batch_size=64",
    "training.learning_rate=3e-4",
    "data.max_length=0",
    "data.knowledge_max_length=0",
]
ARMS: dict[str, dict] = {
    "full": {"every": 6, "note": "the method, every step full (96 px, batch 24, lr 1e-4)"},
    "templates": {"every": 6, "corpus": "templates", "note": "the full method on label templates"},
    "cheap-text": {
        "every": 8,
        "set": [
            "data.max_length=32",
            "data.knowledge_max_length=16",
            "model.config.pretraining_config.fusion_batch_size=8",
        ],
        "note": "full, text truncated to 32/16 tokens (from 40/24), ITM/MLM on 8 of 24 pairs",
    },
    "locked-96": {
        "every": 30,
        "set": LOCKED,
        "note": "locked text throughout (96 px, batch 64, lr 3e-4, 56/40 tokens)",
    },
    "locked-64": {"every": 40, "set": [*LOCKED, "model.image_size=64"], "note": "locked text throughout, 64 px"},
    "locked-64-proj": {
        "every": 40,
        "set": [*LOCKED, "model.image_size=64", "run.locked_text_projection=true"],
        "note": "locked text and text projection throughout, 64 px",
    },
    "two-phase-64": {
        "every": 40,
        "set": [
            *LOCKED[1:],
            "model.image_size=64",
            "run.locked_text_steps=100",
            "run.locked_text_projection=true",
            "model.config.pretraining_config.fusion_batch_size=16",
        ],
        "note": "locked text + projection for 100 steps, then full (ITM/MLM on 16 of 64 pairs), 64 px",
    },
}
# Wall-clock points of the printed table (seconds of training).
CHECKPOINTS = (30, 60, 120, 180, 240, 300, 600)


def run_arm(arm: str, corpus: Path, output: Path, seconds: float, validation: int, seed: int) -> list[dict]:
    """Trains one arm for `seconds`; returns its curve (the logged zero-shot points)."""
    from wvlp.train.config import load_config
    from wvlp.train.run import train

    spec, run_dir = ARMS[arm], output / arm
    done = run_dir / "curve.json"
    if done.is_file():
        return json.loads(done.read_text())
    data = templates_corpus(corpus, output / "templates-corpus") if spec.get("corpus") == "templates" else corpus
    overrides = [
        f"data.path={data}",
        f"training.output_dir={run_dir}",
        f"training.seed={seed}",
        "training.max_steps=1000000",
        "training.lr_scheduler_type=constant_with_warmup",
        "training.warmup_steps=10",
        "training.save_steps=1000000",
        "training.disable_tqdm=true",
        f"run.max_train_seconds={seconds}",
        f"run.zero_shot_every={spec['every']}",
        f"data.validation_size={validation}",
        f"data.max_eval_samples={validation}",
        *BASELINE,
        *spec.get("set", []),
    ]
    remove_dir(run_dir, RUN, "the schedule study's run folder")
    metrics = train(load_config(TRAIN_CONFIG, overrides))
    history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    curve = [
        {k: e[k] for k in ("step", "images_seen", "train_seconds", "eval_zero_shot_top1", "phase") if k in e}
        for e in history
        if "eval_zero_shot_top1" in e
    ]
    # The untrained start, from the run's own evaluation before training.
    start = {"step": 0, "images_seen": 0, "train_seconds": 0.0, "eval_zero_shot_top1": None}
    start["eval_zero_shot_top1"] = metrics["zero_shot_before"]["zero_shot_top1"]
    curve = [start, *curve]
    done.write_text(json.dumps(curve, indent=1) + "\n")
    return curve


def top1_at(curve: list[dict], seconds: float) -> float | None:
    """The last evaluated top-1 at or before `seconds` of training (None past the curve's end)."""
    if curve[-1]["train_seconds"] < seconds * 0.98:
        return None
    return [p for p in curve if p["train_seconds"] <= seconds * 1.02][-1]["eval_zero_shot_top1"]


def table(curves: dict[str, list[dict]], seconds: float) -> str:
    """Markdown: top-1 (%) of each arm at the wall-clock points up to `seconds`, plus its images seen by then."""
    points = [t for t in CHECKPOINTS if t <= seconds]
    lines = [
        "| arm | what changes | " + " | ".join(f"{t} s" for t in points) + " | images seen at the end |",
        "|---|---|" + "---|" * len(points) + "---|",
    ]
    for arm, curve in curves.items():
        cells = []
        for t in points:
            value = top1_at(curve, t)
            cells.append("-" if value is None else f"{100 * value:.1f}")
        lines.append(f"| {arm} | {ARMS[arm]['note']} | " + " | ".join(cells) + f" | {curve[-1]['images_seen']} |")
    return "\n".join(lines)


def plot(curves: dict[str, list[dict]], path: Path) -> None:
    """Top-1 against images seen and against training seconds, one line per arm, a marker at phase changes."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), dpi=100, sharey=True)
    for arm, curve in curves.items():
        for ax, axis in zip(axes, ("images_seen", "train_seconds")):
            (line,) = ax.plot([p[axis] for p in curve], [100 * p["eval_zero_shot_top1"] for p in curve], label=arm)
            for before, p in zip(curve, curve[1:]):
                if "phase" in before and p.get("phase") != before.get("phase"):
                    ax.axvline(p[axis], linestyle="--", color=line.get_color(), linewidth=0.8)
    for ax, label in zip(axes, ("images seen", "training wall-clock (s), 2 CPU cores")):
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("zero-shot top-1, validation (%)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="out/fashion-mnist/corpus")
    parser.add_argument("--output", default="out/schedules")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--validation", type=int, default=1000, help="training images held out for the curve")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    corpus, output = Path(args.corpus), Path(args.output)
    if not (corpus / "README.md").is_file():
        raise FileNotFoundError(f"--corpus {corpus} is not a corpus folder (write it with `wvlp describe`)")
    output.mkdir(parents=True, exist_ok=True)
    curves = {arm: run_arm(arm, corpus, output, args.seconds, args.validation, args.seed) for arm in args.arms}
    plot(curves, output / "schedules.png")
    summary = {"seconds": args.seconds, "validation_images": args.validation, "seed": args.seed, "curves": curves}
    (output / "schedules.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(table(curves, args.seconds))
    return summary


if __name__ == "__main__":
    main()

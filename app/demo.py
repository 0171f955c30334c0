"""The main job on the embedded default: describe -> pre-train -> evaluate -> report -> release folders.

    wvlp demo                      # full scale: 360 SmolLM2 descriptions, fashion-mnist.yaml, 10k test images
    wvlp demo --scale ci           # the same code path at a size CI can afford (a few minutes)

Every stage is the public entry point a user would call (`run_describe`, `wvlp.train.run.train`, `evaluate_model`,
`stage_release` + `validate_release`); the demo only chooses their inputs. Rerunning reuses the description cache
(`<output>/corpus.generations.jsonl`), so only missing generations are requested again.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

DESCRIBE_CONFIG = Path(str(files("wvlp.data") / "configs" / "fashion-mnist.yaml"))
TRAIN_CONFIG = Path(str(files("wvlp.train") / "configs" / "fashion-mnist.yaml"))
# The Space and the benchmarks are not installed: the demo runs them from the checkout it runs in.
SPACE_DIR = Path(__file__).resolve().parents[1] / "spaces_demo"
MODEL_STEP_BENCH = Path(__file__).resolve().parents[1] / "bench" / "model_step.py"


@dataclass(frozen=True)
class DemoScale:
    """How much of each stage runs; `full` is the embedded default as configured, `ci` a reduced copy of it."""

    describe: dict[str, Any] = field(default_factory=dict)  # DescribeConfig overrides
    train: tuple[str, ...] = ()  # `--set` overrides of fashion-mnist.yaml
    eval_images: int | None = None  # test images for zero-shot and the linear probe (None: all 10k)
    retrieval_images: int = 1000  # gallery of class-level retrieval (ITM re-ranks each query's top-k)
    probe_train: int = 10_000
    itm_k: int = 16
    # Timed steps of bench/model_step.py's compute table, after one warm-up (0: no table): a full step takes ~11 s on
    # 2 cores, so the demo times one; docs/results.md's table is a 10-step run.
    compute_steps: int = 1


SCALES = {
    "full": DemoScale(),
    "ci": DemoScale(
        describe={
            "samples_per_prompt": 1,
            "max_images_per_split": 4000,
            "llm": {"type": "local", "batch_size": 16},
            "decoding": {"max_new_tokens": 40, "temperature": 0.7, "top_p": 0.9},
            "query_describer": None,  # Gemma's cross-LLM queries cost CI ~2 min; tests/test_pipeline.py covers them
        },
        train=(
            "training.max_steps=40",
            "run.locked_text_steps=30",
            "run.zero_shot_every=30",
            "run.alpha_warmup_steps=15",
            "model.config.queue_size=256",
            "data.max_eval_samples=500",
        ),
        eval_images=1000,
        retrieval_images=300,
        probe_train=2000,
        itm_k=8,
        compute_steps=0,
    ),
}


def descriptions_section(corpus_dir: Path, per_class: int = 2) -> str:
    """The corpus's description-quality table (stats.json) and `per_class` verbatim training descriptions per class."""
    import datasets

    from wvlp.data.quality import quality_table

    stats = json.loads((corpus_dir / "stats.json").read_text())
    train = datasets.load_dataset(str(corpus_dir), "descriptions", split="train")
    names = train.features["label"].names
    shown: dict[int, list[str]] = {}
    for label, text in zip(train["label"], train["text"]):
        if len(shown.setdefault(label, [])) < per_class:
            shown[label].append(text)
    llms = ", ".join(sorted(set(train["llm"])))
    lines = [
        f"## The descriptions ({llms})",
        "Description quality (nearest class-name prompt / class centroid under the frozen MiniLM embedder, "
        "distinct-n, within-class similarity):",
        "",
        *quality_table(stats["quality"]),
        "",
        f"Verbatim, the first {per_class} training descriptions of each class:",
        "",
        *(f"- **{names[label]}**: " + " / ".join(f"“{t}”" for t in shown[label]) for label in sorted(shown)),
    ]
    return "\n".join(lines)


def _timed(name: str, timings: dict[str, float], fn: Callable[[], Any]) -> Any:
    """Runs one stage, printing a header and recording its wall time."""
    print(f"\n== {name}", flush=True)
    start = time.perf_counter()
    result = fn()
    timings[name] = time.perf_counter() - start
    print(f"== {name}: {timings[name]:.0f} s", flush=True)
    return result


def run_demo(output: str | Path = "out/fashion-mnist", scale: str = "full", org: str = "wvlp") -> dict:
    """Runs the whole job into `output` and returns the summary (also written to `<output>/summary.json`)."""
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r}: expected one of {sorted(SCALES)}")
    from wvlp.common.safe_io import RUN, remove_dir
    from wvlp.data.pipeline import load_describe_config, run_describe
    from wvlp.evaluation.run import evaluate_model
    from wvlp.release.publish import repo_ids, stage_release, validate_release
    from wvlp.release.report import write_report
    from wvlp.train.config import load_config
    from wvlp.train.run import train

    plan, out = SCALES[scale], Path(output)
    corpus, run_dir, eval_dir = out / "corpus", out / "run", out / "eval"
    timings: dict[str, float] = {}
    describe_config = load_describe_config(DESCRIBE_CONFIG, {**plan.describe, "output": str(corpus)})
    _timed(
        "describe (SmolLM2 descriptions, Gemma queries, knowledge, corpus)",
        timings,
        lambda: run_describe(describe_config),
    )

    overrides = [f"data.path={corpus}", f"training.output_dir={run_dir}", *plan.train]
    train_config = load_config(TRAIN_CONFIG, overrides)
    remove_dir(run_dir, RUN, "the demo's run folder")  # a demo run starts afresh; `wvlp train --resume` continues one
    metrics = _timed("pre-train (fashion-mnist.yaml)", timings, lambda: train(train_config))

    compute_md = out / "compute.md"
    if plan.compute_steps:
        _timed(
            "compute: FLOPs per image by loss term, GFLOP/s and MFU (bench/model_step.py)",
            timings,
            lambda: subprocess.run(
                [
                    sys.executable,
                    str(MODEL_STEP_BENCH),
                    "--config",
                    str(TRAIN_CONFIG),
                    "--steps",
                    str(plan.compute_steps),
                    "--warmup",
                    "1",
                    "--markdown",
                    str(compute_md),
                ],
                check=True,
            ),
        )

    model_dir = run_dir / "model"
    zero_shot_json, retrieval_json = eval_dir / "zero_shot.json", eval_dir / "retrieval.json"
    _timed(
        "evaluate: zero-shot + linear probe",
        timings,
        lambda: evaluate_model(
            model_dir,
            corpus,
            tasks="zero-shot,linear-probe",
            max_images=plan.eval_images,
            probe_max_train=plan.probe_train,
            out=zero_shot_json,
        ),
    )
    _timed(
        "evaluate: class-level retrieval (held-out descriptions)",
        timings,
        lambda: evaluate_model(
            model_dir,
            corpus,
            tasks="retrieval",
            max_images=plan.retrieval_images,
            itm_k=plan.itm_k,
            out=retrieval_json,
        ),
    )

    def release() -> Path:
        repos = repo_ids(org, "wvlp", "wvlp-descriptions", "wvlp-demo")
        staged = stage_release(model_dir, corpus, SPACE_DIR, repos, out / "release", [zero_shot_json, retrieval_json])
        validate_release(staged)
        return staged.staging

    release_dir = _timed("release folders (model, dataset, Space; validated, not uploaded)", timings, release)
    summary = write_report(
        out / "report",
        run_dir,
        metrics,
        [zero_shot_json, retrieval_json],
        timings,
        scale=scale,
        release_dir=release_dir,
        compute_md=compute_md if plan.compute_steps else None,
        sections=[descriptions_section(corpus)],
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary

"""Do LLM descriptions beat label templates at the embedded default's schedule? Four text sides, seeds 0-2.

    python -m studies.describers --smollm2 out/fashion-mnist/corpus --gemma out/fashion-mnist-gemma/corpus

Every arm trains `train/configs/fashion-mnist.yaml` (the locked-text schedule: locked steps, then 4 full steps) for
the same `--steps` optimiser steps of the same batch, so arms see equal images; their training seconds are reported
next to it. Arms (`ARMS`): label templates alone (UniCL-style: no knowledge), templates + the class's WordNet gloss as
knowledge (K-LITE-style), the method on SmolLM2 descriptions and on Gemma descriptions. Metrics, on the first
`--eval-images` test images: class-name zero-shot top-1, and ITC R@1 both ways with queries no training LLM of the
arm wrote: cross-LLM (Gemma's queries for every arm trained on SmolLM2-corpus images and text, SmolLM2's for the
Gemma arm) and CuPL's GPT-3 sentences (held out of both corpora's knowledge). Paired per-seed deltas against the
method on SmolLM2. Finished runs are skipped on rerun. Writes `<docs>/describers_study.{json,md}`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from wvlp.common.safe_io import RUN, remove_dir
from wvlp.demo import TRAIN_CONFIG

from studies.study import ARMS as STUDY_ARMS
from studies.study import seed_stats, templates_corpus

FULL_STEPS = 4  # the default schedule ends with full steps (ITM/MLM on), as the demo's 12 of 1112
ARMS: dict[str, dict] = {
    "templates-only": {
        "corpus": "templates",
        "set": ["model.config.knowledge_loss_weight=0.0", "data.num_knowledge=0"],
        "note": "label templates, no knowledge (UniCL-style)",
    },
    "templates-gloss": {
        "corpus": "templates-gloss",
        "note": "label templates + WordNet gloss knowledge (K-LITE-style)",
    },
    "smollm2": {"corpus": "smollm2", "note": "the method, SmolLM2-135M-Instruct descriptions + retrieved knowledge"},
    "gemma": {"corpus": "gemma", "note": "the method, Gemma 3 270M (completion) descriptions + retrieved knowledge"},
}
# The method's ablations, on the SmolLM2 corpus (their overrides as in studies.study).
for _name in ("no-knowledge", "no-distillation", "no-category-targets", "itc-only", "prompts-1", "prompts-3"):
    ARMS[_name] = {**STUDY_ARMS[_name], "corpus": "smollm2"}
REFERENCE = "smollm2"
METRICS = ("top1", "cross_t2i_r1", "cross_i2t_r1", "cupl_t2i_r1", "cupl_i2t_r1")


def corpora(args: argparse.Namespace) -> dict[str, tuple[Path, Path]]:
    """(training corpus, evaluation corpus) per corpus name: templates keep the SmolLM2 corpus's images and queries."""
    smollm2, gemma, output = Path(args.smollm2), Path(args.gemma), Path(args.output)
    return {
        "templates": (templates_corpus(smollm2, output / "templates-corpus"), smollm2),
        "templates-gloss": (templates_corpus(smollm2, output / "templates-gloss-corpus", knowledge="gloss"), smollm2),
        "smollm2": (smollm2, smollm2),
        "gemma": (gemma, gemma),
    }


def run_arm(arm: str, seed: int, data: tuple[Path, Path], output: Path, steps: int, eval_images: int) -> dict:
    """Trains and evaluates one (arm, seed) and returns its record (cached in the run folder)."""
    from wvlp.evaluation.run import evaluate_model
    from wvlp.train.config import load_config
    from wvlp.train.run import train

    run_dir = output / arm / f"seed{seed}"
    done = run_dir / "study_eval.json"
    if done.is_file():
        return json.loads(done.read_text())
    train_corpus, eval_corpus = data
    overrides = [
        f"data.path={train_corpus}",
        f"training.output_dir={run_dir}",
        f"training.seed={seed}",
        f"training.max_steps={steps}",
        f"run.locked_text_steps={steps - FULL_STEPS}",
        f"run.alpha_warmup_steps={max(1, steps // 3)}",
        "run.zero_shot_every=0",
        "training.save_steps=100000",
        "training.disable_tqdm=true",
        *ARMS[arm].get("set", []),
    ]
    remove_dir(run_dir, RUN, "the study run folder")  # an unfinished run starts afresh
    config = load_config(TRAIN_CONFIG, overrides)
    start = time.perf_counter()
    train(config)
    seconds = time.perf_counter() - start
    record = evaluate_model(
        run_dir / "model",
        eval_corpus,
        tasks="zero-shot,retrieval",
        itm_k=0,
        max_images=eval_images,
        query_sets=["cross-llm", "cupl"],
        command=f"python -m studies.describers --arms {arm} --seeds {seed} --steps {steps}",
    )
    sets = record["metrics"]["query_sets"]
    record["study"] = {
        "arm": arm,
        "seed": seed,
        "steps": steps,
        "images_seen": steps * config.training.per_device_train_batch_size,
        "train_seconds": round(seconds, 1),
        "top1": record["metrics"]["zero_shot"]["top1"],
        **{
            f"{name}_{d}_r1": sets[query]["retrieval"]["itc"][f"{d}_r1"]
            for name, query in (("cross", "cross-llm"), ("cupl", "cupl"))
            for d in ("t2i", "i2t")
        },
        "cross_llm": sets["cross-llm"]["source"]["llm"],
        "overrides": overrides,
    }
    done.write_text(json.dumps(record, indent=2) + "\n")
    return record


def summarise(records: list[dict]) -> dict:
    """Per arm: mean/std over seeds of every metric, and the per-seed delta to the method on SmolLM2."""
    arms: dict[str, dict] = {}
    for record in records:
        study = record["study"]
        arms.setdefault(study["arm"], {"note": ARMS[study["arm"]]["note"], "runs": []})["runs"].append(
            {key: study[key] for key in ("seed", "images_seen", "train_seconds", "cross_llm", *METRICS)}
        )
    for name, entry in arms.items():
        entry["runs"].sort(key=lambda run: run["seed"])
        for key in (*METRICS, "train_seconds"):
            entry[key] = seed_stats([run[key] for run in entry["runs"]])
        reference = {run["seed"]: run for run in arms.get(REFERENCE, {}).get("runs", [])}
        if name != REFERENCE and reference:
            pairs = [(run, reference[run["seed"]]) for run in entry["runs"] if run["seed"] in reference]
            entry["paired_delta"] = {key: seed_stats([a[key] - b[key] for a, b in pairs]) for key in METRICS}
    return {"reference": REFERENCE, "arms": arms}


def markdown(summary: dict, command: str) -> str:
    """The table docs/results.md quotes: mean ± std, and the paired delta to the reference with seeds above it."""

    def cell(stats: dict) -> str:
        return f"{100 * stats['mean']:.1f} ± {100 * stats['std']:.1f}"

    def delta(entry: dict, key: str) -> str:
        d = entry.get("paired_delta", {}).get(key)
        if d is None:
            return "-"
        return f"{100 * d['mean']:+.1f} ± {100 * d['std']:.1f} ({sum(v > 0 for v in d['values'])}/{d['n']} above)"

    lines = [
        f"Reproduce: `{command}`",
        "",
        "| arm | text side | zero-shot top-1 | Δ | cross-LLM t→i R@1 | Δ | cross-LLM i→t R@1 | Δ | CuPL t→i R@1 | Δ "
        "| CuPL i→t R@1 | Δ | images seen | train s | n |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ARMS:
        entry = summary["arms"].get(name)
        if entry is None:
            continue
        cells = " | ".join(f"{cell(entry[key])} | {delta(entry, key)}" for key in METRICS)
        lines.append(
            f"| {name} | {entry['note']} | {cells} | {entry['runs'][0]['images_seen']:,} | "
            f"{entry['train_seconds']['mean']:.0f} | {len(entry['runs'])} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smollm2", default="out/fashion-mnist/corpus", help="corpus of fashion-mnist.yaml")
    parser.add_argument("--gemma", default="out/fashion-mnist-gemma/corpus", help="corpus of fashion-mnist-gemma.yaml")
    parser.add_argument("--output", default="out/describers-study")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--eval-images", type=int, default=2000)
    parser.add_argument("--docs", default="docs")
    args = parser.parse_args(argv)
    for name in ("smollm2", "gemma"):
        if not (Path(getattr(args, name)) / "README.md").is_file():
            raise FileNotFoundError(
                f"--{name} {getattr(args, name)} is not a corpus folder (write it with wvlp describe)"
            )
    if args.steps <= FULL_STEPS:
        raise ValueError(f"--steps {args.steps}: must exceed the {FULL_STEPS} full steps that end the schedule")
    Path(args.output).mkdir(parents=True, exist_ok=True)
    data = corpora(args)
    records = []
    for seed in args.seeds:  # seed-major: a partial study already covers every arm once
        for arm in args.arms:
            record = run_arm(arm, seed, data[ARMS[arm]["corpus"]], Path(args.output), args.steps, args.eval_images)
            print(
                f"{arm:>16} seed {seed}: " + ", ".join(f"{k} {100 * record['study'][k]:.1f}" for k in METRICS),
                flush=True,
            )
            records.append(record)
    # Every finished run in --output, not only this invocation's: a study extended arm by arm reports all of it.
    finished = sorted(Path(args.output).glob("*/seed*/study_eval.json"))
    records = [json.loads(path.read_text()) for path in finished if path.parts[-3] in ARMS]
    summary = summarise(records)
    command = (
        f"python -m studies.describers --smollm2 {args.smollm2} --gemma {args.gemma} --steps {args.steps} "
        f"--eval-images {args.eval_images} --seeds {' '.join(map(str, args.seeds))}"
    )
    docs = Path(args.docs)
    (docs / "describers_study.json").write_text(json.dumps({"command": command, **summary}, indent=2) + "\n")
    (docs / "describers_study.md").write_text(markdown(summary, command) + "\n")
    print(markdown(summary, command))
    return summary


if __name__ == "__main__":
    main()

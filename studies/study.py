"""The study: what each part of the method contributes on the embedded default (mean +- std over seeds).

    python -m studies.study --corpus out/fashion-mnist/corpus --output out/study          # every arm, seeds 0 1 2
    python -m studies.study --corpus out/fashion-mnist/corpus --output out/study --arms full templates --seeds 0

Every arm trains `train/configs/fashion-mnist.yaml` as it was when measured (BASELINE) with the same budget (`--steps` optimiser steps of the same batch
size and resolution) and differs only by the overrides listed in ARMS; each run is evaluated with the same protocol
(`evaluate_model`: zero-shot top-1 with `evaluation/prompts/templates_v1.txt` on the first `--eval-images` test images;
seen/unseen/harmonic for the held-out-class arms). Finished runs are skipped on rerun (their `study_eval.json`
exists). `docs/results.json` and `docs/results.md` are written from the per-run JSONs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import yaml

from wvlp.common.safe_io import RUN, STAGING, remove_dir
from wvlp.demo import TRAIN_CONFIG

UNSEEN = ("Sandal", "Shirt", "Bag")  # held out of pre-training in the unseen-class arms
# Label templates of the "templates only" arm: the CLIP-style text side the method replaces.
LABEL_TEMPLATES = (
    "a photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a {}.",
    "a photo of the {}.",
    "this is a {}.",
)
ONE_PROMPT = ("appearance_shape",)
THREE_PROMPTS = ("appearance_shape", "materials", "setting_place")

# `fashion-mnist.yaml` as it was when these studies were measured (96 px, batch 24, every step full), so that the
# tables in docs/results.md stay reproducible whatever schedule the embedded default now has.
BASELINE_IMAGE_SIZE = 96
BASELINE = [
    f"model.image_size={BASELINE_IMAGE_SIZE}",
    "training.per_device_train_batch_size=24",
    "training.learning_rate=1e-4",
    "data.max_length=40",
    "data.knowledge_max_length=24",
    "run.locked_text_steps=0",
    "run.locked_text_projection=false",
    "model.config.pretraining_config.fusion_batch_size=0",
    "data.augment.enabled=true",
]
ARMS: dict[str, dict] = {
    "templates": {"corpus": "templates", "note": "text side = label templates only"},
    "full": {"note": "LLM descriptions, every loss (the method)"},
    "no-distillation": {"set": ["model.config.momentum_distillation=false"], "note": "- momentum distillation"},
    "no-knowledge": {
        "set": ["model.config.knowledge_loss_weight=0.0", "data.num_knowledge=0"],
        "note": "- retrieved knowledge",
    },
    "no-category-targets": {
        "set": ["model.config.category_aware_targets=false"],
        "note": "- category-aware targets (one-hot ITC)",
    },
    "itc-only": {
        "set": ["model.config.itm_loss_weight=0.0", "model.config.mlm_loss_weight=0.0"],
        "note": "- ITM and MLM",
    },
    "prompts-1": {"set": [f"data.prompt_ids={list(ONE_PROMPT)}"], "note": "1 prompt template"},
    "prompts-3": {"set": [f"data.prompt_ids={list(THREE_PROMPTS)}"], "note": "3 prompt templates"},
    "templates-unseen": {"corpus": "templates", "holdout": True, "note": "templates, 3 classes held out"},
    "full-unseen": {"holdout": True, "note": "the method, 3 classes held out"},
}


def templates_corpus(corpus: Path, folder: Path, knowledge: str = "retrieved") -> Path:
    """A copy of `corpus` whose training descriptions are label templates (same images, test split and schema).

    `knowledge`: "retrieved" keeps the knowledge the LLM rows of the class retrieved; "gloss" gives every template the
    class's WordNet gloss as its one knowledge sentence (K-LITE's external knowledge).
    """
    if knowledge not in ("retrieved", "gloss"):
        raise ValueError(f"knowledge={knowledge!r}: choose 'retrieved' or 'gloss'")
    import datasets
    import numpy as np

    from wvlp.data.knowledge import SentenceEmbedder
    from wvlp.data.sources import FashionMNISTSource

    if (folder / "README.md").is_file():
        return folder
    staging = folder.with_name(folder.name + ".partial")
    remove_dir(staging, STAGING, "the staging folder of the templates corpus")
    (staging / "data" / "descriptions").mkdir(parents=True)
    for config in ("images", "raw_generations"):
        (staging / "data" / config).symlink_to((corpus / "data" / config).resolve(), target_is_directory=True)
    shutil.copy(next((corpus / "data" / "descriptions").glob("test-*.parquet")), staging / "data" / "descriptions")
    train = datasets.load_dataset(str(corpus), "descriptions", split="train")
    classes = {c.label: c for c in FashionMNISTSource().classes}
    prompt_names = {label: c.prompt_name for label, c in classes.items()}  # the names the LLM was asked about
    rows = []
    for label in sorted(set(train["label"])):
        examples = train.filter(lambda x: x == label, input_columns="label")
        for i, template in enumerate(LABEL_TEMPLATES):
            row = dict(examples[i % len(examples)])  # knowledge of this class, as the LLM rows retrieved it
            text = template.format(prompt_names[label])
            row.update(
                description_id=f"template:{label}:{i}",
                prompt_id=f"label_template_{i}",
                template=template,
                sample_index=0,
                llm="label-template",
                llm_revision="1",
                text=text,
            )
            if knowledge == "gloss":
                cls = classes[label]
                row.update(
                    knowledge_ids=[f"wordnet:{cls.class_id}"],
                    knowledge_texts=[f"{cls.prompt_name}: {cls.gloss}"],
                    knowledge_scores=[1.0],
                )
            rows.append(row)
    embeddings = SentenceEmbedder().embed([r["text"] for r in rows])
    for row, embedding in zip(rows, embeddings):
        row["teacher_embedding"] = np.asarray(embedding, dtype=np.float16).tolist()
    table = datasets.Dataset.from_list(rows, features=train.features)
    table.to_parquet(str(staging / "data" / "descriptions" / "train-00000-of-00001.parquet"))
    card = (corpus / "README.md").read_text()
    header, body = card.split("---\n")[1], card.split("---\n", 2)[2]
    meta = yaml.safe_load(header)
    for info in meta.get("dataset_info", []):
        if info["config_name"] == "descriptions":
            for split in info["splits"]:
                if split["name"] == "train":
                    split["num_examples"], split["num_bytes"] = len(table), table.data.nbytes
    note = f"Study arm: the train descriptions are label templates ({knowledge} knowledge); images and test split unchanged.\n\n"
    (staging / "README.md").write_text("---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n" + note + body)
    staging.rename(folder)
    return folder


def run_arm(arm: str, seed: int, corpus: Path, output: Path, steps: int, eval_images: int) -> dict:
    """Trains and evaluates one (arm, seed); returns its `wvlp-eval/1` record plus the run's timing."""
    from wvlp.evaluation.run import evaluate_model
    from wvlp.train.config import load_config
    from wvlp.train.run import train

    spec = ARMS[arm]
    run_dir = output / arm / f"seed{seed}"
    done = run_dir / "study_eval.json"
    if done.is_file():
        return json.loads(done.read_text())
    data = templates_corpus(corpus, output / "templates-corpus") if spec.get("corpus") == "templates" else corpus
    holdout = list(UNSEEN) if spec.get("holdout") else []
    overrides = [
        f"data.path={data}",
        f"training.output_dir={run_dir}",
        f"training.seed={seed}",
        f"training.max_steps={steps}",
        "training.save_steps=100000",
        "training.disable_tqdm=true",
        f"run.alpha_warmup_steps={max(1, steps // 3)}",
        "training.warmup_steps=2",
        f"data.holdout_classes={holdout}",
        "data.max_eval_samples=100",
        *BASELINE,
        *spec.get("set", []),
    ]
    remove_dir(run_dir, RUN, "the study run folder")  # an unfinished run starts afresh; a foreign folder is refused
    start = time.perf_counter()
    metrics = train(load_config(TRAIN_CONFIG, overrides))
    seconds = time.perf_counter() - start
    record = evaluate_model(
        run_dir / "model",
        corpus,
        tasks="zero-shot",
        max_images=eval_images,
        holdout_classes=holdout or None,
        command=f"python -m studies.study --arms {arm} --seeds {seed} --steps {steps} --eval-images {eval_images}",
    )
    record["study"] = {
        "arm": arm,
        "seed": seed,
        "steps": steps,
        "train_seconds": round(seconds, 1),
        "overrides": overrides,
        "train_loss": metrics["train"].get("train_loss"),
    }
    done.write_text(json.dumps(record, indent=2) + "\n")
    return record


def references(corpus: Path, output: Path, eval_images: int, probe_train: int) -> dict:
    """Untrained initial model: zero-shot accuracy and a linear probe on its frozen image features."""
    from wvlp.evaluation.run import evaluate_model
    from wvlp.modeling import build_default_model, build_default_processor

    path = output / "initial_model.json"
    if path.is_file():
        return json.loads(path.read_text())
    model, processor = build_default_model(BASELINE_IMAGE_SIZE), build_default_processor(BASELINE_IMAGE_SIZE)
    record = evaluate_model(
        model,
        corpus,
        processor=processor,
        tasks="zero-shot,linear-probe",
        max_images=eval_images,
        probe_max_train=probe_train,
        stage="initial (untrained)",
    )
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def seed_stats(values: list[float]) -> dict:
    """Mean, sample std (0 for one seed), n and the values of one metric over seeds."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
        "values": values,
    }


def paired_reference(arm: str) -> str:
    """The arm another arm is compared with seed by seed: the method, trained on the same classes."""
    return "full-unseen" if ARMS[arm].get("holdout") else "full"


def summarise(records: list[dict], initial: dict) -> dict:
    """Per-arm mean/std of zero-shot top-1 (and seen/unseen/harmonic where classes were held out)."""
    arms: dict[str, dict] = {}
    for record in records:
        arm, zs = record["study"]["arm"], record["metrics"]["zero_shot"]
        entry = arms.setdefault(arm, {"note": ARMS[arm]["note"], "runs": []})
        entry["runs"].append(
            {
                "seed": record["study"]["seed"],
                "top1": zs["top1"],
                "seen_top1": zs.get("seen_top1"),
                "unseen_top1": zs.get("unseen_top1"),
                "harmonic": zs.get("harmonic"),
                "train_seconds": record["study"]["train_seconds"],
            }
        )
    for entry in arms.values():
        for key in ("top1", "seen_top1", "unseen_top1", "harmonic"):
            values = [r[key] for r in entry["runs"] if r[key] is not None]
            if values:
                entry[key] = seed_stats(values)
    # Seeds fix the initialisation and the batches of every arm alike, so the per-seed difference to the method
    # removes the variance the arms share (the between-seed spread is larger than most arm effects).
    for name, entry in arms.items():
        reference = arms.get(paired_reference(name))
        if reference is None or reference is entry:
            continue
        base = {r["seed"]: r["top1"] for r in reference["runs"]}
        deltas = [
            r["top1"] - base[r["seed"]] for r in sorted(entry["runs"], key=lambda r: r["seed"]) if r["seed"] in base
        ]
        if deltas:
            entry["paired_delta_top1"] = {**seed_stats(deltas), "reference": paired_reference(name)}
    return {
        "arms": arms,
        "initial_model": {
            "zero_shot_top1": initial["metrics"]["zero_shot"]["top1"],
            "linear_probe_top1": initial["metrics"]["linear_probe"]["top1"],
            "linear_probe_train": initial["metrics"]["linear_probe"]["train_samples"],
        },
    }


def write_results(summary: dict, args: argparse.Namespace, docs: Path) -> None:
    """`docs/results.json` and the table part of `docs/results.md` (the prose below the marker is kept)."""
    docs.mkdir(parents=True, exist_ok=True)
    setup = {
        "steps": args.steps,
        "seeds": args.seeds,
        "eval_images": args.eval_images,
        "unseen_classes": UNSEEN,
        "train_config": str(TRAIN_CONFIG.relative_to(TRAIN_CONFIG.parents[2])),
        "command": f"python -m studies.study --corpus {args.corpus} --output {args.output} --steps {args.steps} "
        f"--eval-images {args.eval_images} --seeds {' '.join(map(str, args.seeds))}",
    }
    (docs / "results.json").write_text(json.dumps({"setup": setup, **summary}, indent=2) + "\n")

    def cell(entry: dict, key: str) -> str:
        s = entry.get(key)
        return "-" if s is None else f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"

    def delta(entry: dict) -> str:
        d = entry.get("paired_delta_top1")
        if d is None:
            return "-"
        above = sum(v > 0 for v in d["values"])
        return f"{100 * d['mean']:+.1f} ± {100 * d['std']:.1f} ({above}/{d['n']} above)"

    lines = [
        "| arm | what changes | zero-shot top-1 | Δ vs the method, same seed | seen | unseen | harmonic | n |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ARMS:
        if name in summary["arms"]:
            e = summary["arms"][name]
            lines.append(
                f"| {name} | {e['note']} | {cell(e, 'top1')} | {delta(e)} | {cell(e, 'seen_top1')} | "
                f"{cell(e, 'unseen_top1')} | {cell(e, 'harmonic')} | {len(e['runs'])} |"
            )
    init = summary["initial_model"]
    lines.append(f"| initial model | untrained, zero-shot | {100 * init['zero_shot_top1']:.1f} | | | | | 1 |")
    lines.append(
        f"| linear probe | supervised reference on the initial model's frozen image features "
        f"({init['linear_probe_train']} labelled images) | {100 * init['linear_probe_top1']:.1f} | | | | | 1 |"
    )
    table = "\n".join(lines)
    marker = "<!-- prose below is written by hand and kept on regeneration -->"
    path = docs / "results.md"
    prose = path.read_text().split(marker, 1)[1] if path.is_file() and marker in path.read_text() else "\n"
    head = (
        f"# Study results\n\nEmbedded default (Fashion-MNIST, EfficientNet-Lite0 + MiniLM, SmolLM2 descriptions), "
        f"{args.steps} optimiser steps per run, batch and resolution of `{setup['train_config']}`, "
        f"seeds {', '.join(map(str, args.seeds))}; zero-shot top-1 (%) on the first {args.eval_images} test images "
        f"with `evaluation/prompts/templates_v1.txt`, mean ± std over seeds. Unseen arms hold out "
        f"{', '.join(UNSEEN)} from pre-training.\n\nReproduce: `{setup['command']}` (JSON: `docs/results.json`)."
    )
    path.write_text(f"{head}\n\n{table}\n\n{marker}{prose}")


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="out/fashion-mnist/corpus")
    parser.add_argument("--output", default="out/study")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--eval-images", type=int, default=500)
    parser.add_argument("--probe-train", type=int, default=5000)
    parser.add_argument("--docs", default="docs")
    parser.add_argument(
        "--summarise-only",
        action="store_true",
        help="write docs/results.* from the runs already finished, training nothing",
    )
    args = parser.parse_args(argv)
    corpus, output = Path(args.corpus), Path(args.output)
    if not (corpus / "README.md").is_file():
        raise FileNotFoundError(f"--corpus {corpus} is not a corpus folder (write it with `wvlp describe`)")
    output.mkdir(parents=True, exist_ok=True)
    initial = references(corpus, output, args.eval_images, args.probe_train)  # cached after the first run
    records = []
    for seed in args.seeds:  # seed-major: a partial study already covers every arm once
        for arm in args.arms:
            done = output / arm / f"seed{seed}" / "study_eval.json"
            if args.summarise_only and not done.is_file():
                continue
            record = run_arm(arm, seed, corpus, output, args.steps, args.eval_images)
            print(
                f"{arm:>20} seed {seed}: zero-shot top-1 {100 * record['metrics']['zero_shot']['top1']:.1f} "
                f"({record['study']['train_seconds']:.0f} s)",
                flush=True,
            )
            records.append(record)
    summary = summarise(records, initial)
    write_results(summary, args, Path(args.docs))
    return summary


if __name__ == "__main__":
    main()

"""The demo's report folder: `report.md` with the numbers of the run and its evaluation JSONs, beside their PNGs."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from wvlp.evaluation.schema import query_set_summaries, retrieval_modes


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def summary_rows(train_metrics: dict, evals: Sequence[dict]) -> list[tuple[str, str]]:
    """(metric, value) rows of the final table, from the training metrics and the `wvlp-eval/1` records."""
    before = train_metrics.get("zero_shot_before", {}).get("zero_shot_top1")
    after = train_metrics.get("zero_shot_after", {}).get("zero_shot_top1")
    rows = [
        (
            "zero-shot top-1, eval subset of training: before -> after",
            f"{_pct(before)} -> {_pct(after)} ({100 * (after - before):+.1f} points)"
            if None not in (before, after)
            else "-",
        )
    ]
    for record in evals:
        metrics, images = record["metrics"], record["data"]["num_images"]
        if "zero_shot" in metrics:
            zs = metrics["zero_shot"]
            rows.append(
                (
                    f"zero-shot top-1 / top-5, class-name prompts ({images} test images)",
                    f"{_pct(zs['top1'])} / {_pct(zs['top5'])}",
                )
            )
        if "zero_shot_descriptions" in metrics:
            zs = metrics["zero_shot_descriptions"]
            rows.append(
                ("zero-shot top-1 / top-5, held-out description ensembles", f"{_pct(zs['top1'])} / {_pct(zs['top5'])}")
            )
        if "linear_probe" in metrics:
            probe = metrics["linear_probe"]
            rows.append((f"linear probe top-1 ({probe['train_samples']} train images)", _pct(probe["top1"])))
        if "retrieval" in metrics:
            ret = metrics["retrieval"]
            for stage, label in retrieval_modes(ret):
                r = ret[stage]
                rows.append(
                    (
                        f"text->image R@1/5/10, {label} ({images} images)",
                        " / ".join(_pct(r[f"t2i_r{k}"]) for k in (1, 5, 10)),
                    )
                )
                rows.append((f"image->text R@1/5/10, {label}", " / ".join(_pct(r[f"i2t_r{k}"]) for k in (1, 5, 10))))
        for q in query_set_summaries(metrics):
            rows.append(
                (
                    f"query set {q['name']} ({q['count']} texts: {q['what']}): t->i / i->t R@1 {q['mode']}, "
                    "ITC; description-ensemble zero-shot top-1",
                    f"{_pct(q['t2i_r1'])} / {_pct(q['i2t_r1'])}, {_pct(q['itc_t2i_r1'])} / {_pct(q['itc_i2t_r1'])}; "
                    f"{_pct(q['zero_shot_top1'])}",
                )
            )
        for name, why in (metrics.get("query_sets") or {}).get("skipped", {}).items():
            rows.append((f"query set {name}", f"not evaluated: {why}"))
    return rows


def format_table(rows: Sequence[tuple[str, str]], header: tuple[str, str] = ("metric", "value")) -> str:
    """A two-column Markdown table."""
    width = max(len(name) for name, _ in [*rows, header])
    lines = [f"| {header[0].ljust(width)} | {header[1]} |", f"|{'-' * (width + 2)}|{'-' * (len(header[1]) + 2)}|"]
    return "\n".join([*lines, *(f"| {name.ljust(width)} | {value} |" for name, value in rows)])


def write_report(
    report_dir: Path,
    run_dir: Path,
    train_metrics: dict,
    eval_jsons: Sequence[Path],
    timings: dict[str, float],
    scale: str,
    release_dir: Path | None = None,
    compute_md: Path | None = None,
    sections: Sequence[str] = (),
) -> dict:
    """Writes `report.md` and its PNGs, prints the summary table, and returns the summary.

    `compute_md` is the markdown `bench/model_step.py --markdown` wrote for the run's config (the Compute section);
    `sections` are markdown sections placed after the results (the demo's: the descriptions trained on).
    """
    report_dir.mkdir(parents=True, exist_ok=True)
    evals = [json.loads(Path(p).read_text()) for p in eval_jsons]
    figures = []
    for png in sorted((run_dir / "plots").glob("*.png")):
        if png.stem == "zero_shot_curve":  # the learning curve leads the report: accuracy against images and seconds
            figures.insert(
                0, ("learning curve: zero-shot top-1 during training", shutil.copy(png, report_dir / png.name))
            )
        else:
            figures.append(("loss curve: " + png.stem, shutil.copy(png, report_dir / f"loss_{png.name}")))
    for path in eval_jsons:
        for kind, title in (
            ("confusion", "confusion matrix (zero-shot, test)"),
            ("retrieval_examples", "retrieval examples: query text and its top-5 images"),
        ):
            png = Path(path).with_suffix("").with_name(f"{Path(path).stem}.{kind}.png")
            if png.is_file():
                figures.append((title, shutil.copy(png, report_dir / png.name)))
    rows = summary_rows(train_metrics, evals)
    table = format_table(rows)
    timing_rows = [(stage, f"{seconds:.0f} s") for stage, seconds in timings.items()]
    timing_rows.append(("total", f"{sum(timings.values()):.0f} s"))
    timing_table = format_table(timing_rows, header=("stage", "wall time"))
    commands = "\n".join(f"    {record['command']}" for record in evals)
    text = "\n\n".join(
        [
            f"# wvlp demo report ({scale} scale)",
            "Weakly supervised pre-training on Fashion-MNIST: the only supervision is the class label; the text side is "
            "LLM descriptions of each label (nine prompts) plus retrieved WordNet/CuPL knowledge. "
            "Retrieval queries are held-out descriptions the model never trained on (by the same LLM: they flatter "
            "it), and the query sets by other writers (CuPL's GPT-3, another describer); a hit is any image of the "
            "query's class.",
            "## Results\n\n" + table,
            *sections,
            "## Time per stage\n\n" + timing_table,
            *(
                [
                    "## Compute (bench/model_step.py, random weights, the run's sizes)\n\n"
                    + compute_md.read_text().strip()
                ]
                if compute_md is not None
                else []
            ),
            "## Reproduce\n\n    wvlp demo"
            + (" --scale ci" if scale != "full" else "")
            + "\n\nEvaluation commands:\n\n"
            + commands,
            *(f"## {title}\n\n![{title}]({Path(png).name})" for title, png in figures),
            f"Release folders (validated, not uploaded): `{release_dir}`" if release_dir else "",
        ]
    )
    (report_dir / "report.md").write_text(text.rstrip() + "\n")
    print("\n" + table + "\n\n" + timing_table)
    print(f"\nreport: {report_dir / 'report.md'}")
    return {
        "scale": scale,
        "rows": dict(rows),
        "timings_s": timings,
        "report": str(report_dir / "report.md"),
        "release": str(release_dir) if release_dir else None,
    }

"""The study's bookkeeping: per-arm statistics, paired per-seed deltas, and the committed results' consistency."""

import argparse
import json
import statistics
from pathlib import Path

import pytest

from studies.study import ARMS, summarise, write_results

ROOT = Path(__file__).resolve().parent.parent
TOP1 = {
    "full": [0.50, 0.40, 0.45],
    "templates": [0.55, 0.47, 0.44],
    "full-unseen": [0.48, 0.41, 0.40],
    "templates-unseen": [0.47, 0.45, 0.44],
}


def record(arm: str, seed: int) -> dict:
    zero_shot = {"top1": TOP1[arm][seed]}
    if ARMS[arm].get("holdout"):
        zero_shot.update(seen_top1=TOP1[arm][seed] + 0.1, unseen_top1=0.05 + 0.01 * seed, harmonic=0.1)
    return {"study": {"arm": arm, "seed": seed, "train_seconds": 60.0}, "metrics": {"zero_shot": zero_shot}}


INITIAL = {"metrics": {"zero_shot": {"top1": 0.1}, "linear_probe": {"top1": 0.8, "train_samples": 100}}}


def test_summary_statistics_and_paired_deltas_by_hand():
    records = [record(arm, seed) for seed in (2, 0, 1) for arm in TOP1]  # any order
    summary = summarise(records, INITIAL)["arms"]
    templates = summary["templates"]
    assert templates["top1"]["mean"] == pytest.approx(statistics.fmean(TOP1["templates"]))
    assert templates["top1"]["std"] == pytest.approx(statistics.stdev(TOP1["templates"]))
    deltas = [t - f for t, f in zip(TOP1["templates"], TOP1["full"])]  # +0.05, +0.07, -0.01
    paired = templates["paired_delta_top1"]
    assert paired["reference"] == "full" and paired["values"] == pytest.approx(deltas)
    assert paired["std"] == pytest.approx(statistics.stdev(deltas))
    # The held-out-class arms are paired with the method trained on the same classes; the method with nothing.
    assert summary["templates-unseen"]["paired_delta_top1"]["reference"] == "full-unseen"
    assert "paired_delta_top1" not in summary["full"] and "paired_delta_top1" not in summary["full-unseen"]
    assert summary["full-unseen"]["unseen_top1"]["values"] == pytest.approx([0.07, 0.05, 0.06])


def test_results_markdown_keeps_the_prose_and_shows_the_deltas(tmp_path):
    marker = "<!-- prose below is written by hand and kept on regeneration -->"
    (tmp_path / "results.md").write_text(f"old table\n\n{marker}\n\nhand-written findings\n")
    args = argparse.Namespace(steps=15, seeds=[0, 1, 2], eval_images=500, corpus="c", output="o")
    write_results(summarise([record(arm, s) for s in range(3) for arm in TOP1], INITIAL), args, tmp_path)
    text = (tmp_path / "results.md").read_text()
    assert "old table" not in text and text.endswith("hand-written findings\n")
    assert "| templates | " in text and "+3.7 ± 4.2 (2/3 above)" in text
    assert json.loads((tmp_path / "results.json").read_text())["setup"]["steps"] == 15


def test_committed_results_cover_every_arm_and_seed_with_the_documented_command():
    results = json.loads((ROOT / "docs" / "results.json").read_text())
    seeds = results["setup"]["seeds"]
    assert len(seeds) == 3 and set(results["arms"]) == set(ARMS)
    for name, arm in results["arms"].items():
        assert sorted(run["seed"] for run in arm["runs"]) == sorted(seeds), name
        assert arm["top1"]["mean"] == pytest.approx(statistics.fmean(run["top1"] for run in arm["runs"]))
    command = results["setup"]["command"]
    assert (
        command.startswith("python -m studies.study ") and f"`{command}`" in (ROOT / "docs" / "results.md").read_text()
    )

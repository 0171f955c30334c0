"""The describers study's bookkeeping: per-arm statistics and per-seed deltas against the method on SmolLM2."""

import statistics

import pytest

from studies.describers import METRICS, markdown, summarise


def record(arm: str, seed: int, top1: float) -> dict:
    metrics = dict.fromkeys(METRICS, 0.5) | {"top1": top1}
    study = {"arm": arm, "seed": seed, "images_seen": 9600, "train_seconds": 100.0 + seed, "cross_llm": ["x"]}
    return {"study": {**study, **metrics}}


def test_paired_deltas_and_table_by_hand():
    top1 = {"smollm2": [0.80, 0.70, 0.75], "templates-only": [0.82, 0.69, 0.79]}
    records = [record(arm, seed, values[seed]) for seed in (2, 0, 1) for arm, values in top1.items()]
    summary = summarise(records)["arms"]
    deltas = [a - b for a, b in zip(top1["templates-only"], top1["smollm2"])]  # +0.02, -0.01, +0.04
    paired = summary["templates-only"]["paired_delta"]["top1"]
    assert paired["values"] == pytest.approx(deltas) and paired["std"] == pytest.approx(statistics.stdev(deltas))
    assert summary["smollm2"]["top1"]["mean"] == pytest.approx(0.75) and "paired_delta" not in summary["smollm2"]
    assert summary["templates-only"]["paired_delta"]["cupl_t2i_r1"]["values"] == pytest.approx([0.0, 0.0, 0.0])
    table = markdown({"arms": summary}, "python -m studies.describers")
    assert (
        "| templates-only | label templates, no knowledge (UniCL-style) | 76.7 ± 6.8 | +1.7 ± 2.5 (2/3 above) |"
        in table
    )
    assert "| 9,600 | 101 | 3 |" in table

"""studies/schedules.py: reading the equal-wall-clock table off the logged curves."""

from studies.schedules import ARMS, plot, table, top1_at
from studies.study import BASELINE

CURVE = [
    {"step": 0, "images_seen": 0, "train_seconds": 0.0, "eval_zero_shot_top1": 0.1},
    {"step": 40, "images_seen": 2560, "train_seconds": 59.0, "eval_zero_shot_top1": 0.6, "phase": "locked-text"},
    {"step": 80, "images_seen": 5120, "train_seconds": 121.0, "eval_zero_shot_top1": 0.7, "phase": "locked-text"},
    {"step": 84, "images_seen": 5376, "train_seconds": 181.0, "eval_zero_shot_top1": 0.65, "phase": "full"},
]


def test_top1_at_reads_the_last_point_within_the_budget_and_nothing_past_the_curve():
    assert top1_at(CURVE, 30) == 0.1  # nothing evaluated yet but the start
    assert top1_at(CURVE, 60) == 0.6  # 59 s is within 2% of 60
    assert top1_at(CURVE, 120) == 0.7  # 121 s too
    assert top1_at(CURVE, 180) == 0.65
    assert top1_at(CURVE, 240) is None  # the run stopped before 240 s


def test_table_and_plot(tmp_path):
    text = table({"two-phase-64": CURVE}, 180)
    assert "| 30 s | 60 s | 120 s | 180 s |" in text
    assert "| 10.0 | 60.0 | 70.0 | 65.0 | 5376 |" in text
    plot({"two-phase-64": CURVE}, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_every_arm_overrides_known_settings_after_the_pinned_baseline():
    from wvlp.train.config import load_config

    for arm, spec in ARMS.items():
        config = load_config(None, [*BASELINE, *spec.get("set", [])])
        locked = config.run.locked_text_steps > 0
        assert locked == arm.startswith(("locked", "two-phase")), arm

"""The crash-safe checkpoint writer overrides two private Trainer methods; this fails loudly when they change."""

import pytest

from wvlp.train import trainer
from wvlp.train.trainer import WVLPTrainer, private_api_problem


def test_the_private_trainer_api_the_checkpoint_writer_overrides_is_unchanged():
    assert private_api_problem() is None
    assert all(name in vars(WVLPTrainer) for name in trainer.PRIVATE_API)  # the methods the check covers


def test_a_changed_private_api_stops_training_before_it_starts(monkeypatch):
    monkeypatch.setitem(trainer.PRIVATE_API, "_get_output_dir", ("self", "trial", "renamed"))
    assert "changed Trainer._get_output_dir" in private_api_problem()
    with pytest.raises(RuntimeError, match="update train/trainer.py's checkpoint writer"):
        WVLPTrainer(model=None)

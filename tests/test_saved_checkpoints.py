"""Checkpoints saved by an earlier version of the code (tests/fixtures/saved_checkpoints, written by
tests/fixtures/make_saved_checkpoints.py) load with today's code and give exactly the outputs recorded then."""

import pytest
import torch
from safetensors.torch import load_file

from modeling_wvlp import WVLPForPreTraining, WVLPModel
from tests.helpers import FOLDER, model_outputs, pretraining_outputs


@pytest.mark.skipif(not (FOLDER / "reference.safetensors").is_file(), reason="fixture not written")
def test_saved_checkpoints_give_identical_outputs():
    reference = load_file(str(FOLDER / "reference.safetensors"))
    batch = {k.removeprefix("input."): v for k, v in reference.items() if k.startswith("input.")}
    got = {f"model.{k}": v for k, v in model_outputs(WVLPModel.from_pretrained(FOLDER / "model").eval(), batch).items()}
    pretraining = WVLPForPreTraining.from_pretrained(FOLDER / "pretraining").eval()
    got |= {f"pretraining.{k}": v for k, v in pretraining_outputs(pretraining, batch).items()}
    expected = {k: v for k, v in reference.items() if not k.startswith("input.")}
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert torch.equal(got[name], value), f"{name}: max abs diff {(got[name].float() - value.float()).abs().max()}"

"""Checkpoints saved by an earlier version of the code (tests/fixtures/saved_checkpoints, written by
tests/fixtures/make_saved_checkpoints.py) load with today's code and give exactly the outputs that code gave.

Float rounding depends on the CPU's kernels, so "exactly" is per machine kind: `reference-<machine>.safetensors` holds
the outputs the old code (commit in its metadata) gave on that kind of machine, and the test demands max abs diff 0
against it. On a machine kind with no recording, it compares with the original recording to 1e-5 (two CPU kinds
measured 1.1e-6 apart) and says so.
"""

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from wvlp.modeling import WVLPForPreTraining, WVLPModel

from tests.helpers import FOLDER, machine_kind, model_outputs, pretraining_outputs


@pytest.mark.skipif(not (FOLDER / "reference.safetensors").is_file(), reason="fixture not written")
def test_saved_checkpoints_give_identical_outputs():
    recorded_here = FOLDER / f"reference-{machine_kind()}.safetensors"
    path = recorded_here if recorded_here.is_file() else FOLDER / "reference.safetensors"
    reference = load_file(str(path))
    batch = {k.removeprefix("input."): v for k, v in reference.items() if k.startswith("input.")}
    got = {
        f"model.{k}": v for k, v in model_outputs(WVLPModel.from_pretrained(FOLDER / "model").eval(), batch).items()
    }
    pretraining = WVLPForPreTraining.from_pretrained(FOLDER / "pretraining").eval()
    got |= {f"pretraining.{k}": v for k, v in pretraining_outputs(pretraining, batch).items()}
    expected = {k: v for k, v in reference.items() if not k.startswith("input.")}
    assert set(got) == set(expected)
    atol = 0.0 if path == recorded_here else 1e-5
    for name, value in expected.items():
        diff = (got[name].float() - value.float()).abs().max().item()
        assert diff <= atol, f"{name}: max abs diff {diff} against {path.name} (allowed {atol})"


def test_machine_recordings_come_from_the_old_code():
    """Every per-machine recording says which commit computed it, on the same inputs as the original."""
    original = load_file(str(FOLDER / "reference.safetensors"))
    for path in FOLDER.glob("reference-*.safetensors"):
        with safe_open(str(path), "pt") as f:
            assert f.metadata()["machine"] == path.stem.removeprefix("reference-") and f.metadata()["code"]
        recorded = load_file(str(path))
        assert all(torch.equal(recorded[k], v) for k, v in original.items() if k.startswith("input."))

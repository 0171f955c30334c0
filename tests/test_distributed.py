"""N processes compute the same losses and gradients as one process holding the global batch."""

import subprocess
from pathlib import Path

import pytest
import torch

from tests.distributed_worker import GLOBAL_BATCH, build_model, run_steps
from tests.helpers import tiny_batch, torchrun

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.distributed
def test_two_processes_equal_one_process(tmp_path):
    out = tmp_path / "dist.pt"
    cmd = torchrun(2, "--module", "tests.distributed_worker", str(out))
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    distributed = torch.load(out)
    single = run_steps(build_model(), tiny_batch(GLOBAL_BATCH, seed=3), slice(0, GLOBAL_BATCH))
    for step, (d, s) in enumerate(zip(distributed, single)):
        assert set(d["losses"]) == {"loss", "itc_loss", "itm_loss", "mlm_loss", "imc_loss", "knowledge_loss"}
        for name in s["losses"]:
            torch.testing.assert_close(d["losses"][name], s["losses"][name], atol=1e-5, rtol=0, msg=f"{step} {name}")
        assert set(d["grads"]) == set(s["grads"])
        for name in s["grads"]:
            torch.testing.assert_close(d["grads"][name], s["grads"][name], atol=1e-5, rtol=0, msg=f"{step} {name}")

"""bench/model_step.py's FLOP accounting on the tiny model: the per-part counts partition the whole step exactly."""

import pytest
import torch

from tests.helpers import ROOT, load_script, tiny_batch, tiny_config_kwargs


@pytest.fixture(scope="module")
def bench():
    return load_script(ROOT / "bench" / "model_step.py", "wvlp_bench_model_step")


def test_parts_partition_the_step_and_itc_only_counts_less(bench):
    from wvlp.modeling import WVLPConfig, WVLPForPreTraining

    torch.manual_seed(0)
    model = WVLPForPreTraining(WVLPConfig(**tiny_config_kwargs())).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    steps = bench.build_steps(model, tiny_batch(), optimizer)
    full = bench.count_step(model, steps["full"])
    itc = bench.count_step(model, steps["itc"], default="ITC")

    for counted in (full, itc):  # exact: the parts sum to a second, uninstrumented step's count
        assert sum(counted.parts.values()) == counted.total == counted.uninstrumented_total > 0
    assert itc.total < full.total
    # The EMA teacher only runs forward, and its rows agree with FlopCounterMode's own module hierarchy.
    assert full.teacher_by_part == full.teacher_by_module > 0
    assert all(
        value == 0
        for (path, direction), value in full.parts.items()
        if path[-1] == "EMA teacher" and direction == "backward"
    )
    # Every term of the default objective has its own forward and backward; the shared towers' backward is theirs.
    for path in [("student image tower",), ("student text tower",), ("ITC",), ("knowledge",), ("ITM",), ("MLM",)]:
        assert full.part(path, "forward") > 0 and full.part(path, "backward") > 0, path
    assert full.part(("MLM", "EMA teacher"), "forward") > 0 and full.part(("knowledge", "EMA teacher")) > 0
    # The plain step shares the towers' cost exactly and has nothing else but its in-batch loss.
    assert {path for path, _ in itc.parts} == {("student image tower",), ("student text tower",), ("ITC",)}
    assert itc.part(("student text tower",), "forward") == full.part(("student text tower",), "forward")
    # The locked-text step runs no text tower: less than the full step, and more than its image tower alone.
    with bench.flop_counter_mode() as locked:
        steps["locked"]()
    assert full.part(("student image tower",)) < locked.get_total_flops() < full.total
    table = bench.flops_table(full, itc, batch_size=6)
    assert "ITM: fusion layers" in table and "**whole step**" in table


def test_depthwise_convolution_backward_counts_twice_its_forward(bench):
    """Torch's formula counts a grouped convolution's weight gradient `groups` times over; the bench's does not."""
    conv = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    with bench.flop_counter_mode() as forward:
        y = conv(x)
    with bench.flop_counter_mode() as backward:
        y.sum().backward()
    assert backward.get_total_flops() == 2 * forward.get_total_flops() > 0

"""FLOPs, speed and MFU of one optimisation step of WVLPForPreTraining (all default losses) vs a plain ITC-only
dual-encoder step of the same model on the same batch, and vs the locked-text step (the text tower's pooled output
an input, as `wvlp.train.text_cache` gives it; its total FLOPs and speed, no per-part split).

Sizes default to the demo's `train/configs/fashion-mnist.yaml`: EfficientNet-Lite0 + MiniLM-L6 shapes, its image
size, batch size, text / knowledge lengths, number of knowledge sentences, MLM masking, queue size and loss weights.
Weights are random: FLOPs and speed do not depend on the values. CPU; both steps and the fp32 matmul peak are measured
in this one run (median of `--steps` timed steps after `--warmup` untimed ones, the steps interleaved), so only ratios
are comparable across runs.

FLOPs are what `torch.utils.flop_counter.FlopCounterMode` counts over one whole step (forward, backward, AdamW, EMA
update): matmuls, convolutions and attention; elementwise ops (norms, activations, softmax, AdamW, EMA) count 0.
Two gaps of torch 2.13's formulas are filled here (checked in tests/test_bench_flops.py): the weight gradient of a
grouped (depthwise) convolution is counted `groups` times over upstream (fixed by pytorch/pytorch#183405), and the CPU
fused attention kernel (`_scaled_dot_product_flash_attention_for_cpu` and its backward) has no formula, so it counted 0.
Why not FlopCounterMode's module hierarchy for the split: its backward tracking loses the thread when a module's input
needs no gradient or a module runs several times (the text layers run for descriptions, knowledge, ITM and MLM).
Attribution to parts, exact by construction and checked every run:
- forward: the methods that compute each part (the student towers, the EMA teacher, each `_*_loss`) run inside a
  label; nested labels name sub-parts (the knowledge loss's own text-tower passes, the MLM teacher). The FLOPs
  counted while a label is innermost-active are that part's;
- backward: every autograd node belongs to the part whose forward created it (node sequence numbers grow in creation
  order and are bisected into the parts' ranges); a pre-hook on each node moves the count to its part before the node
  runs (CPU autograd runs the nodes one at a time in this thread). So a shared tower's backward, which carries the
  summed gradient of every term that reads it, is the tower's row, never split among the terms;
- the parts must sum to the count of a second, uninstrumented step (printed), and the EMA teacher's rows to the
  teacher's count in FlopCounterMode's own module hierarchy (forward only, so that hierarchy is exact there).

Usage: python bench/model_step.py [--config train/configs/fashion-mnist.yaml] [--batch-size N] [--image-size PX]
    [--length TOKENS] [--knowledge K] [--knowledge-length TOKENS] [--steps 10] [--warmup 2] [--markdown out.md]
"""

import argparse
import bisect
import contextlib
import functools
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from wvlp.modeling import WVLPConfig, WVLPForPreTraining

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "train" / "configs" / "fashion-mnist.yaml"

OTHER = "other"
OPTIMIZER = "optimizer"
TEACHER = "EMA teacher"
# Row of the table for each path of nested labels: (name, who reads its output).
ROWS = {
    ("student image tower",): ("student image tower (fwd+bwd)", "ITC, knowledge, ITM, MLM"),
    ("student text tower",): ("student text tower, descriptions (fwd+bwd)", "ITC; ITM reads its fusion input"),
    (TEACHER,): ("EMA teacher, images + descriptions (fwd)", "ITC/knowledge targets + queue; MLM image tokens"),
    ("ITC",): ("ITC similarities + loss", "full: batch + queue columns; ITC-only: in-batch"),
    ("knowledge", "student text tower"): ("knowledge: student text tower (fwd+bwd)", "knowledge"),
    ("knowledge", TEACHER): ("knowledge: EMA teacher text (fwd)", "knowledge targets"),
    ("knowledge",): ("knowledge: similarities + loss", "knowledge"),
    ("ITM",): ("ITM: fusion layers + head, 3×B pairs (fwd+bwd)", "ITM"),
    ("MLM",): ("MLM: student encoder + fusion + head (fwd+bwd)", "MLM"),
    ("MLM", TEACHER): ("MLM: EMA teacher soft targets (fwd)", "MLM"),
    ("IMC",): ("IMC", "IMC"),
    ("prompt bridge",): ("prompt bridge losses", "generation, P-Former alignment"),
    (OPTIMIZER,): ("AdamW + EMA update", "-"),
    (OTHER,): ("other: contrastive targets, logits, loss sum", "-"),
}


def make_batch(
    batch_size: int,
    image_size: int,
    length: int,
    knowledge: int,
    knowledge_length: int | None = None,
    mlm_probability: float = 0.15,
) -> dict:
    """A synthetic batch with every input the default objective uses (10 categories, MLM masking)."""
    g = torch.Generator().manual_seed(0)
    knowledge_length = length if knowledge_length is None else knowledge_length
    input_ids = torch.randint(1000, 30000, (batch_size, length), generator=g)
    masked = torch.rand(batch_size, length, generator=g) < mlm_probability
    return dict(
        pixel_values=torch.randn(batch_size, 3, image_size, image_size, generator=g),
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        category_ids=torch.arange(batch_size) % 10,
        mlm_input_ids=input_ids.masked_fill(masked, 103),
        mlm_labels=input_ids.masked_fill(~masked, -100),
        knowledge_input_ids=torch.randint(1000, 30000, (batch_size, knowledge, knowledge_length), generator=g),
        knowledge_attention_mask=torch.ones(batch_size, knowledge, knowledge_length, dtype=torch.long),
    )


def time_interleaved(steps: dict[str, Callable], repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds of each step over `repeats` rounds that call every step once, after `warmup` rounds:
    interleaved, so a slow spell of the machine slows every step alike and leaves their ratio alone."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


_CONV_BACKWARD = getattr(flop_counter.conv_backward_flop, "__wrapped__", flop_counter.conv_backward_flop)


def _grad_weight_flops(x_shape, grad_out_shape, w_shape, groups: int) -> int:
    """Torch's count of a non-transposed convolution's weight gradient."""
    args = (
        grad_out_shape,
        x_shape,
        w_shape,
        None,
        [1, 1],
        [0, 0],
        [1, 1],
        False,
        [0, 0],
        groups,
        [False, True, False],
    )
    return _CONV_BACKWARD(*args, out_shape=[None, w_shape, None])


# torch <= 2.13 counts the weight gradient of a grouped convolution as if it were ungrouped, `groups` times too much
# (fixed upstream by pytorch/pytorch#183405): for EfficientNet's depthwise convolutions that is up to 1152x. Detected,
# not assumed, so a fixed torch is left alone.
_GROUPED_GRAD_WEIGHT_OVERCOUNT = _grad_weight_flops(
    [1, 2, 1, 1], [1, 2, 1, 1], [2, 1, 1, 1], groups=2
) == 2 * flop_counter.conv_flop_count([1, 2, 1, 1], [2, 1, 1, 1], [1, 2, 1, 1])


def _conv_backward_flop(
    grad_out_shape,
    x_shape,
    w_shape,
    bias,
    stride,
    padding,
    dilation,
    transposed,
    output_padding,
    groups,
    output_mask,
    out_shape=None,
    **kwargs,
) -> int:
    """FlopCounterMode's convolution_backward formula with the grouped weight gradient divided by `groups`."""
    args = (grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed, output_padding, groups)
    if groups == 1 or not _GROUPED_GRAD_WEIGHT_OVERCOUNT:
        return _CONV_BACKWARD(*args, output_mask, out_shape=out_shape, **kwargs)
    grad_input = _CONV_BACKWARD(*args, [output_mask[0], False, False], out_shape=out_shape, **kwargs)
    grad_weight = _CONV_BACKWARD(*args, [False, output_mask[1], False], out_shape=out_shape, **kwargs)
    return grad_input + grad_weight // groups


def _unwrapped(formula):
    return getattr(formula, "__wrapped__", formula)


# FlopCounterMode's registry has no entry for the CPU fused attention kernel that `scaled_dot_product_attention` takes
# without dropout (the EMA teacher, in eval mode), so it would count 0 there: counted as the other fused kernels are.
_EXTRA_FORMULAS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _unwrapped(flop_counter.sdpa_flop),
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _unwrapped(flop_counter.sdpa_backward_flop),
}


def flop_counter_mode() -> FlopCounterMode:
    """FlopCounterMode with grouped convolutions' weight gradients and CPU fused attention counted right."""
    mapping = {**_EXTRA_FORMULAS, torch.ops.aten.convolution_backward: _conv_backward_flop}
    return FlopCounterMode(display=False, custom_mapping=mapping)


def _next_sequence_nr() -> int:
    """The autograd sequence number the next node created in this thread will exceed (a throwaway node's)."""
    with torch.enable_grad():
        return (torch.zeros((), requires_grad=True) + 0).grad_fn._sequence_nr()


class PhaseFlops:
    """One step under FlopCounterMode, every counted FLOP attributed to a (path of labels, forward/backward) part."""

    def __init__(self, default: str = OTHER):
        self.counter = flop_counter_mode()
        self.default = (default,)
        self.stack: list[str] = []
        self.key = (self.default, "forward")
        self.seen = 0
        self.flops: dict[tuple[tuple[str, ...], str], int] = {}
        self.starts: list[int] = []  # the sequence number at which each forward segment began
        self.paths: list[tuple[str, ...]] = []
        self.end = None

    def __enter__(self) -> "PhaseFlops":
        self.counter.__enter__()
        self._mark()
        return self

    def __exit__(self, *exc) -> None:
        self._switch(self.key)  # books the last part
        self.counter.__exit__(*exc)

    @property
    def total(self) -> int:
        return self.counter.get_total_flops()

    def _switch(self, key: tuple[tuple[str, ...], str]) -> None:
        total = self.counter.get_total_flops()
        self.flops[self.key] = self.flops.get(self.key, 0) + total - self.seen
        self.seen, self.key = total, key

    def _mark(self) -> None:
        """Starts a forward segment of the current path."""
        path = tuple(self.stack) or self.default
        self._switch((path, "forward"))
        self.starts.append(_next_sequence_nr())
        self.paths.append(path)

    @contextlib.contextmanager
    def label(self, name: str):
        """The forward FLOPs (and, through the nodes it creates, the backward FLOPs) inside are part `name`."""
        repeated = bool(self.stack) and self.stack[-1] == name  # the teacher's encode inside its get_text_features
        if not repeated:
            self.stack.append(name)
            self._mark()
        try:
            yield
        finally:
            if not repeated:
                self.stack.pop()
                self._mark()

    def watch_backward(self, loss: torch.Tensor) -> None:
        """A pre-hook on every node of `loss`'s graph moves the count to the part whose forward created the node."""
        end = _next_sequence_nr()
        nodes, todo = {}, [loss.grad_fn]
        while todo:
            node = todo.pop()
            if node is None or id(node) in nodes:
                continue
            nodes[id(node)] = node
            todo.extend(next_node for next_node, _ in node.next_functions)
        for node in nodes.values():
            sequence_nr = node._sequence_nr()  # AccumulateGrad (parameter leaves) has none: "other"
            index = bisect.bisect_right(self.starts, sequence_nr) - 1
            path = self.paths[index] if sequence_nr < end else self.default
            node.register_prehook(functools.partial(self._backward_hook, (path, "backward")))

    def _backward_hook(self, key: tuple[tuple[str, ...], str], grad_outputs) -> None:
        self._switch(key)


@contextlib.contextmanager
def instrumented(tracker: PhaseFlops, model: WVLPForPreTraining):
    """Wraps, on these instances only, the methods that compute each part in a label of the tracker."""
    teacher = model.teacher
    targets = [
        (model.wvlp, "get_image_features", "student image tower"),
        (model.wvlp, "get_text_features", "student text tower"),
        (model, "_momentum_features", TEACHER),
        (teacher, "get_image_features", TEACHER),
        (teacher, "get_text_features", TEACHER),
        (teacher.text_model, "encode", TEACHER),
        (teacher.text_model, "fuse", TEACHER),
        (teacher.mlm_head, "forward", TEACHER),
        (model, "_itc_loss", "ITC"),
        (model, "_imc_loss", "IMC"),
        (model, "_knowledge_embeddings", "knowledge"),
        (model, "_knowledge_loss", "knowledge"),
        (model, "_itm_loss", "ITM"),
        (model, "_mlm_loss", "MLM"),
        (model, "_prompt_losses", "prompt bridge"),
    ]
    for obj, attr, name in targets:
        original = getattr(obj, attr)

        def wrapper(*args, _original=original, _name=name, **kwargs):
            with tracker.label(_name):
                return _original(*args, **kwargs)

        object.__setattr__(obj, attr, wrapper)  # an instance attribute shadows the method
    try:
        yield
    finally:
        for obj, attr, _ in targets:
            object.__delattr__(obj, attr)


def build_steps(model: WVLPForPreTraining, batch: dict, optimizer: torch.optim.Optimizer) -> dict[str, Callable]:
    """The two optimisation steps; each takes an optional PhaseFlops that counts it."""

    def optimizer_part(tracker):
        return tracker.label(OPTIMIZER) if tracker is not None else contextlib.nullcontext()

    def full_step(tracker: PhaseFlops | None = None) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = model(**batch).loss
        if tracker is not None:
            tracker.watch_backward(loss)
        loss.backward()
        with optimizer_part(tracker):
            optimizer.step()
            model.momentum_update()

    student = model.wvlp

    def itc_step(tracker: PhaseFlops | None = None) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = student(
            pixel_values=batch["pixel_values"],
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            category_ids=batch["category_ids"],
            return_loss=True,
        ).loss
        if tracker is not None:
            tracker.watch_backward(loss)
        loss.backward()
        with optimizer_part(tracker):
            optimizer.step()

    # The locked-text step: the frozen text tower's pooled output of each text comes from the cache, so it is an input.
    hidden = model.config.text_config.hidden_size
    locked_batch = {
        k: v for k, v in batch.items() if k in ("pixel_values", "category_ids", "pixel_values_aug", "knowledge_valid")
    }
    locked_batch["text_pooler_output"] = torch.randn(batch["input_ids"].shape[0], hidden)
    if "knowledge_input_ids" in batch:
        locked_batch["knowledge_pooler_output"] = torch.randn(*batch["knowledge_input_ids"].shape[:2], hidden)

    def locked_step(tracker: PhaseFlops | None = None) -> None:
        optimizer.zero_grad(set_to_none=True)
        model(**locked_batch).loss.backward()
        optimizer.step()
        model.momentum_update(skip=("text_model.",))

    return {"full": full_step, "itc": itc_step, "locked": locked_step}


@dataclass
class StepFlops:
    """One step's FLOPs by part, and the checks that the parts are exact."""

    parts: dict[tuple[tuple[str, ...], str], int]  # (path of labels, "forward" / "backward") -> FLOPs
    total: int  # the instrumented step's FlopCounterMode total
    uninstrumented_total: int  # a second step, counted with no labels or hooks
    teacher_by_module: int  # the teacher's FLOPs in FlopCounterMode's module hierarchy

    def part(self, path: tuple[str, ...], direction: str | None = None) -> int:
        return sum(v for (p, d), v in self.parts.items() if p == path and direction in (None, d))

    @property
    def teacher_by_part(self) -> int:
        return sum(v for (path, _), v in self.parts.items() if path[-1] == TEACHER)


def count_step(model: WVLPForPreTraining, step: Callable, default: str = OTHER) -> StepFlops:
    """FLOPs of one call of `step`, by part, plus an uninstrumented count of a second call to check the sum."""
    tracker = PhaseFlops(default)
    with instrumented(tracker, model), tracker:
        step(tracker)
    prefix = f"{type(model).__name__}.teacher."
    counts = {name: sum(ops.values()) for name, ops in tracker.counter.get_flop_counts().items()}
    teacher_modules = [name for name in counts if name.startswith(prefix)]
    teacher_by_module = sum(  # the outermost teacher modules that ran: each counts its descendants' FLOPs too
        counts[name] for name in teacher_modules if not any(name.startswith(other + ".") for other in teacher_modules)
    )
    with flop_counter_mode() as plain:
        step()
    return StepFlops(
        parts={key: value for key, value in tracker.flops.items() if value},
        total=tracker.total,
        uninstrumented_total=plain.get_total_flops(),
        teacher_by_module=teacher_by_module,
    )


def matmul_peak(sizes: list[int], seconds: float = 1.0) -> tuple[float, int]:
    """Best fp32 `torch.mm` GFLOP/s over square sizes, and its size: the fastest of the calls made in `seconds` per
    size (at least 3, after one warm-up); the fastest call, since a peak is what the machine can do, not does."""
    best = (0.0, 0)
    for n in sizes:
        a, b, out = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
        torch.mm(a, b, out=out)
        times, deadline = [], time.perf_counter() + seconds
        while len(times) < 3 or time.perf_counter() < deadline:
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            times.append(time.perf_counter() - start)
        best = max(best, (2 * n**3 / min(times) / 1e9, n))
    return best


def _paths_in_order(*steps: StepFlops) -> list[tuple[str, ...]]:
    seen = {path for step in steps for path, _ in step.parts}
    ordered = [path for path in ROWS if path in seen]
    return ordered + sorted(seen - set(ordered))


def flops_table(full: StepFlops, itc: StepFlops, batch_size: int) -> str:
    """Markdown: MFLOP per image of every part of both steps."""

    def mflop(value: int) -> str:
        return f"{value / batch_size / 1e6:,.1f}"

    def share(value: int, total: int) -> str:
        return f"{100 * value / total:.1f}%"

    lines = [
        "| part | read by | full: fwd | full: bwd | full: total | full: share | ITC-only: total | ITC-only: share |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for path in _paths_in_order(full, itc):
        name, readers = ROWS.get(path, (" / ".join(path), "?"))
        f_total, i_total = full.part(path), itc.part(path)
        if not f_total and not i_total:
            continue
        lines.append(
            f"| {name} | {readers} | {mflop(full.part(path, 'forward'))} | {mflop(full.part(path, 'backward'))} | "
            f"{mflop(f_total)} | {share(f_total, full.total)} | {mflop(i_total)} | {share(i_total, itc.total)} |"
        )
    f_fwd = sum(v for (_, d), v in full.parts.items() if d == "forward")
    lines.append(
        f"| **whole step** | | {mflop(f_fwd)} | {mflop(full.total - f_fwd)} | **{mflop(full.total)}** | 100% | "
        f"**{mflop(itc.total)}** | 100% |"
    )
    return "\n".join(lines)


def speed_table(rows: dict[str, tuple[int, float]], batch_size: int, peak: float) -> str:
    """Markdown: GFLOP per image, median step time, throughput, achieved GFLOP/s and MFU of each step."""
    lines = [
        "| step | GFLOP/image | median s/step | images/s | achieved GFLOP/s | MFU |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, (flops, seconds) in rows.items():
        achieved = flops / seconds / 1e9
        lines.append(
            f"| {name} | {flops / batch_size / 1e9:.3f} | {seconds:.3f} | {batch_size / seconds:.1f} | "
            f"{achieved:.1f} | {100 * achieved / peak:.1f}% |"
        )
    (f_flops, f_s), *others = rows.values()
    for other, (o_flops, o_s) in zip(list(rows)[1:], others):
        f_rate, o_rate = f_flops / f_s, o_flops / o_s
        lines.append(
            f"| full / {other.split(' (')[0]} | {f_flops / o_flops:.2f}× | {f_s / o_s:.2f}× | {o_s / f_s:.2f}× | "
            f"{f_rate / o_rate:.2f}× | {f_rate / o_rate:.2f}× |"
        )
    return "\n".join(lines)


def demo_settings(path: Path) -> dict:
    """Batch, image, text and knowledge sizes, MLM masking and WVLPConfig overrides of a training config."""
    from wvlp.train.config import load_config

    config = load_config(path)
    return dict(
        batch_size=config.training.per_device_train_batch_size,
        image_size=config.model.image_size,
        length=config.data.max_length,
        knowledge=config.data.num_knowledge,
        knowledge_length=config.data.knowledge_max_length,
        mlm_probability=config.data.mlm_probability,
        model_config=dict(config.model.config),
        init=config.model.init,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=DEMO_CONFIG, help="training config the sizes come from")
    parser.add_argument("--batch-size", type=int, help="default: the config's per_device_train_batch_size")
    parser.add_argument("--image-size", type=int, help="default: the config's model.image_size")
    parser.add_argument("--length", type=int, help="description tokens; default: the config's data.max_length")
    parser.add_argument("--knowledge", type=int, help="knowledge sentences per description; default: the config's")
    parser.add_argument("--knowledge-length", type=int, help="default: the config's data.knowledge_max_length")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first (allocator, oneDNN kernels)")
    parser.add_argument("--peak-sizes", type=int, nargs="+", default=[512, 1024, 2048, 4096], help="torch.mm sizes")
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    args = parser.parse_args()
    settings = demo_settings(args.config)
    for name in ("batch_size", "image_size", "length", "knowledge", "knowledge_length"):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    torch.set_flush_denormal(True)  # as train/run.py: denormal activations make CPU steps erratically slow
    torch.manual_seed(0)
    # The WVLPConfig defaults are the EfficientNet-Lite0 + MiniLM-L6 shapes of the demo's `init: default`.
    config = WVLPConfig(
        vision_config=dict(variant="lite0", image_size=settings["image_size"]), **settings["model_config"]
    )
    model = WVLPForPreTraining(config).train()
    n = settings["batch_size"]
    batch = make_batch(
        n,
        settings["image_size"],
        settings["length"],
        settings["knowledge"],
        settings["knowledge_length"],
        settings["mlm_probability"],
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    steps = build_steps(model, batch, optimizer)

    before = matmul_peak(args.peak_sizes)  # before and after the steps: the better of the two is the peak
    seconds = time_interleaved(steps, args.steps, args.warmup)
    full_s, itc_s = seconds["full"], seconds["itc"]
    full = count_step(model, steps["full"])
    itc = count_step(model, steps["itc"], default="ITC")
    with flop_counter_mode() as locked:
        steps["locked"]()
    after = matmul_peak(args.peak_sizes)
    (peak, peak_size), low = max(before, after), min(before, after)[0]
    for name, counted in (("full", full), ("ITC-only", itc)):
        if sum(counted.parts.values()) != counted.uninstrumented_total:
            raise RuntimeError(
                f"{name} step: the parts sum to {sum(counted.parts.values())} FLOPs, an uninstrumented step counts "
                f"{counted.uninstrumented_total}: the attribution missed or duplicated work"
            )

    pretraining = config.pretraining_config
    cpu = next(
        (line.split(":", 1)[1].strip() for line in _lscpu() if line.startswith("Model name")), platform.machine()
    )
    header = (
        f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}; batch {n}, "
        f"{settings['image_size']} px, {settings['length']} text tokens, {settings['knowledge']} knowledge "
        f"sentence(s) x {settings['knowledge_length']} tokens per image, queue {pretraining.queue_size}, "
        f"MLM {settings['mlm_probability']:.0%}, alpha {pretraining.alpha}; median of {args.steps} interleaved steps "
        f"after {args.warmup} warm-up round(s). "
        f"fp32 matmul peak {peak:.1f} GFLOP/s (fastest torch.mm of sizes {args.peak_sizes}: n={peak_size}; timed "
        f"before and after the steps, the other time {low:.1f})."
    )
    checks = (
        f"Checks: parts sum to an uninstrumented step's count (full {full.uninstrumented_total:,}, ITC-only "
        f"{itc.uninstrumented_total:,} FLOPs); EMA teacher rows {full.teacher_by_part:,} = FlopCounterMode's module "
        f"hierarchy for `teacher.*` {full.teacher_by_module:,}."
    )
    text = "\n\n".join(
        [
            header,
            "MFLOP per image (FlopCounterMode: matmul, convolution, attention; elementwise ops count 0):",
            flops_table(full, itc, n),
            speed_table(
                {
                    "full pre-training step (ITC+ITM+MLM+knowledge, EMA, queue)": (full.total, full_s),
                    "ITC-only (a plain dual-encoder step)": (itc.total, itc_s),
                    "locked-text (ITC+knowledge on cached text, EMA image tower, queue)": (
                        locked.get_total_flops(),
                        seconds["locked"],
                    ),
                },
                n,
                peak,
            ),
            checks,
        ]
    )
    print(text)
    if args.markdown is not None:
        args.markdown.write_text(text + "\n")


def _lscpu() -> list[str]:
    import subprocess

    try:
        return subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines()
    except OSError:
        return []


if __name__ == "__main__":
    main()

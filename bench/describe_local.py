"""LocalTransformersBackend: descriptions/s batched vs one request at a time, on the packaged SmolLM2-135M-Instruct.

The same 16 prompts (Fashion-MNIST classes, two phrasings), 48 new tokens, sampling (temperature 0.9, top-p 0.95)
with a fixed seed per prompt. Outputs depend only on each request's seed, so every mode writes the same texts
(checked): the comparison is like for like. One warm-up call first; the GGUF cache is built if missing.
"CPU stall" is the share of the time some task waited for a CPU (Linux PSI): well above 0% means another process
was competing for the cores and the row is not a clean measurement.
Usage: python bench/describe_local.py [--batch-sizes 8 16] [--new-tokens 48]
"""

import argparse
import time

import torch

from wvlp.data.fashion_mnist import CLASS_NAMES
from wvlp.data.llm import GenerationRequest, LocalTransformersBackend

TEMPLATES = (
    "Describe what a {} looks like in one sentence.",
    "Write one sentence about the shape and material of a {}.",
)


def prompts(new_tokens: int, count: int = 16) -> list[GenerationRequest]:
    """`count` seeded sampling requests over the Fashion-MNIST class names."""
    texts = [t.format(name.lower()) for t in TEMPLATES for name in CLASS_NAMES][:count]
    return [
        GenerationRequest(f"p{i}", [{"role": "user", "content": text}], max_new_tokens=new_tokens, seed=i)
        for i, text in enumerate(texts)
    ]


def cpu_stall_us() -> int | None:
    """Total microseconds some task waited for a CPU (Linux PSI), or None where unavailable."""
    try:
        with open("/proc/pressure/cpu") as f:
            return int(f.readline().split("total=")[1])
    except (OSError, IndexError, ValueError):
        return None


def timed(
    backend: LocalTransformersBackend, requests: list[GenerationRequest], batch_size: int
) -> tuple[float, dict, str]:
    """(seconds, texts by key, CPU contention) of one generate call at `batch_size`."""
    backend.batch_size = batch_size
    texts = {}
    stall, start = cpu_stall_us(), time.perf_counter()
    backend.generate(requests, lambda r: texts.__setitem__(r.key, r.text if r.error is None else r.error))
    seconds = time.perf_counter() - start
    # Other processes on the same cores (e.g. a test run) distort timings badly: say so next to each number.
    contention = "n/a" if stall is None else f"{(cpu_stall_us() - stall) / 1e6 / seconds:.0%}"
    return seconds, texts, contention


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--new-tokens", type=int, default=48)
    args = parser.parse_args()
    backend = LocalTransformersBackend()
    requests = prompts(args.new_tokens)
    timed(backend, requests[:2], 2)  # warm-up
    print(
        f"{backend.name} ({backend.revision}), {len(requests)} prompts, {args.new_tokens} new tokens, sampling, "
        f"{torch.get_num_threads()} torch threads"
    )
    single_s, reference, contention = timed(backend, requests, 1)
    print(f"{'batch size':>10} {'seconds':>8} {'desc/s':>7} {'speed-up':>8} {'same texts':>10} {'CPU stall':>9}")
    print(f"{1:>10} {single_s:>8.2f} {len(requests) / single_s:>7.2f} {1.0:>8.2f} {'':>10} {contention:>9}")
    for batch_size in args.batch_sizes:
        seconds, texts, contention = timed(backend, requests, batch_size)
        print(
            f"{batch_size:>10} {seconds:>8.2f} {len(requests) / seconds:>7.2f} {single_s / seconds:>8.2f} "
            f"{str(texts == reference):>10} {contention:>9}"
        )
    print("e.g.", repr(reference["p0"]))


if __name__ == "__main__":
    main()

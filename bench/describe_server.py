"""ServerBackend throughput against a loopback OpenAI-compatible server with a fixed latency per request.

The ideal throughput at concurrency C is C / latency requests/s; the table shows the achieved fraction of it.
Each level sends `waves` * C requests (the same ideal wall time at every level; one `generate` call, so the
connection set-up of the first wave is included) and keeps the median of `repeats` runs. The server is
`tests/openai_server.py` in its own process, as a real inference server would be.
Usage: python bench/describe_server.py [--latency 0.2] [--concurrency 1 8 64] [--waves 25] [--repeats 3]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

from wvlp.data.llm import GenerationRequest, ServerBackend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(base_url: str, concurrency: int, n: int) -> tuple[float, float]:
    """(wall seconds, client CPU seconds) to complete `n` requests at `concurrency`; all must succeed."""
    backend = ServerBackend(base_url, model="stub", concurrency=concurrency, read_timeout_s=30, max_retries=0)
    requests = [
        GenerationRequest(f"k{i}", [{"role": "user", "content": f"describe item {i}"}], seed=i) for i in range(n)
    ]
    failed = []
    start, cpu = time.perf_counter(), time.process_time()
    backend.generate(requests, lambda r: failed.append(r) if r.error else None)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    if failed:
        raise RuntimeError(f"{len(failed)} requests failed, e.g. {failed[0]}")
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--waves", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.openai_server", "--latency", str(args.latency)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = server.stdout.readline().strip()
        print(
            f"loopback server (own process), {args.latency * 1000:.0f} ms per request, {args.waves} waves, "
            f"median of {args.repeats}"
        )
        print(
            f"{'concurrency':>11} {'requests':>8} {'wall s':>7} {'req/s':>7} {'ideal':>7} {'fraction':>8} "
            f"{'client CPU ms/req':>17}"
        )
        for concurrency in args.concurrency:
            n = args.waves * concurrency
            runs = [measure(base_url, concurrency, n) for _ in range(args.repeats)]
            wall = statistics.median(w for w, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            ideal = concurrency / args.latency
            print(
                f"{concurrency:>11} {n:>8} {wall:>7.2f} {n / wall:>7.1f} {ideal:>7.1f} {n / wall / ideal:>8.3f} "
                f"{cpu / n * 1000:>17.2f}"
            )
    finally:
        server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()

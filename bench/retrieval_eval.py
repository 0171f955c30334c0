"""Retrieval-evaluation cost: chunked torch vs faiss vs the naive full similarity matrix, side by side in one run.

Random L2-normalised features (default 5k images x 25k texts, dim 256, 5 captions per image, COCO-5K sized),
captions pulled towards their image so that ranks spread. Each method ranks both directions (i2t and t2i, top-16
kept for ITM). Time is wall clock; memory is the peak RSS above the RSS before the call, sampled every millisecond
by a thread (torch allocations are invisible to tracemalloc). All methods must give identical ranks.
Usage: python bench/retrieval_eval.py [--images 5000] [--captions 5] [--dim 256] [--chunk 1024]
"""

import argparse
import os
import threading
import time

import numpy as np
import torch

from wvlp.evaluation.retrieval import rank_gallery, retrieval_metrics


def rss_bytes() -> int:
    """Resident set size of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(fn):
    """(result, seconds, peak RSS increase in bytes) of fn()."""
    baseline, peak, done = rss_bytes(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.001)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    done.set()
    thread.join()
    return result, seconds, max(0, max(peak[0], rss_bytes()) - baseline)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--captions", type=int, default=5)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--k", type=int, default=16)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    images = torch.nn.functional.normalize(torch.randn(args.images, args.dim, generator=g), dim=-1)
    text_groups = np.repeat(np.arange(args.images), args.captions)
    texts = torch.randn(len(text_groups), args.dim, generator=g) + 4.0 * images[text_groups]
    texts = torch.nn.functional.normalize(texts, dim=-1)
    image_groups = np.arange(args.images)
    print(
        f"# {args.images} images x {len(text_groups)} texts, dim {args.dim}, torch threads {torch.get_num_threads()}"
    )

    def run(**options):
        i2t = rank_gallery(images, texts, image_groups, text_groups, k=args.k, **options)
        t2i = rank_gallery(texts, images, text_groups, image_groups, k=args.k, **options)
        return i2t, t2i

    methods = {
        "naive full matrix": dict(chunk_size=None, backend="torch"),
        f"chunked torch ({args.chunk})": dict(chunk_size=args.chunk, backend="torch"),
        f"faiss flat IP ({args.chunk})": dict(chunk_size=args.chunk, backend="faiss"),
    }
    rows, reference = [], None
    for name, options in methods.items():
        (i2t, t2i), seconds, peak = measure(lambda: run(**options))
        if reference is None:
            reference = (i2t, t2i)
        same = np.array_equal(i2t.ranks, reference[0].ranks) and np.array_equal(t2i.ranks, reference[1].ranks)
        rows.append((name, seconds, peak, same, retrieval_metrics(i2t.ranks, t2i.ranks)["rsum"]))
    base_seconds, base_peak = rows[0][1], max(rows[0][2], 1)
    print(f"{'method':<26} {'time s':>8} {'x naive':>8} {'peak MiB':>9} {'x naive':>8} {'same ranks':>10} {'rsum':>7}")
    for name, seconds, peak, same, rsum in rows:
        print(
            f"{name:<26} {seconds:8.2f} {seconds / base_seconds:8.2f} {peak / 2**20:9.0f} {peak / base_peak:8.2f} "
            f"{str(same):>10} {rsum:7.3f}"
        )


if __name__ == "__main__":
    main()

"""Knowledge-index build and query time: faiss flat / IVF / HNSW (via KnowledgeIndex) vs numpy brute force.

Random L2-normalised float32 vectors, uniform on the sphere (the worst case for IVF and HNSW recall) or with
--data clustered a Gaussian mixture closer to sentence embeddings; recall@k against the exact numpy result.
HNSW is skipped above --hnsw-max vectors: its build is slow on few cores (~1 min per 100k uniform vectors at M=32
on 2 cores). IVF uses KnowledgeIndex's default nlist = 4 sqrt(N): ~80 s to build at 1M on 2 cores.
Usage: python bench/knowledge_index.py [--sizes 10000,1000000] [--queries 1000] [--k 10] [--dim 384]
"""

import argparse
import time

import numpy as np

from wvlp.data.knowledge import KnowledgeIndex


def random_unit_vectors(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """n random L2-normalised float32 vectors, generated in chunks to bound the temporary memory."""
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - start), dim), dtype=np.float32)
        out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def clustered_unit_vectors(n: int, dim: int, centers: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """n normalised points around random centres (same-cluster cosine ~0.8), like sentence embeddings."""
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        block = centers[rng.integers(0, len(centers), m)] + 0.5 * rng.standard_normal((m, dim), dtype=np.float32)
        out[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def numpy_top_k(corpus: np.ndarray, queries: np.ndarray, k: int, chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product: chunked matmul, argpartition per chunk, then one merge."""
    best_scores = np.full((len(queries), 0), -np.inf, np.float32)
    best_indices = np.zeros((len(queries), 0), np.int64)
    for start in range(0, len(corpus), chunk):
        scores = queries @ corpus[start : start + chunk].T
        kk = min(k, scores.shape[1])
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        best_scores = np.concatenate([best_scores, np.take_along_axis(scores, part, axis=1)], axis=1)
        best_indices = np.concatenate([best_indices, part + start], axis=1)
        keep = np.argpartition(-best_scores, min(k, best_scores.shape[1]) - 1, axis=1)[:, :k]
        best_scores = np.take_along_axis(best_scores, keep, axis=1)
        best_indices = np.take_along_axis(best_indices, keep, axis=1)
    order = np.argsort(-best_scores, axis=1)
    return np.take_along_axis(best_scores, order, axis=1), np.take_along_axis(best_indices, order, axis=1)


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean fraction of the exact top-k found."""
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, exact)]))


def bench_size(n: int, args: argparse.Namespace, rng: np.random.Generator) -> list[dict]:
    """Rows of the table for one corpus size."""
    start = time.perf_counter()
    if args.data == "clustered":
        centers = rng.standard_normal((max(1, n // 100), args.dim), dtype=np.float32)
        corpus = clustered_unit_vectors(n, args.dim, centers, rng)
        queries = clustered_unit_vectors(args.queries, args.dim, centers, rng)
    else:
        corpus = random_unit_vectors(n, args.dim, rng)
        queries = random_unit_vectors(args.queries, args.dim, rng)
    print(f"# {n:,} {args.data} vectors generated in {time.perf_counter() - start:.1f} s", flush=True)
    start = time.perf_counter()
    _, exact = numpy_top_k(corpus, queries, args.k)
    rows = [dict(n=n, method="numpy brute force", build=0.0, query=time.perf_counter() - start, recall=1.0)]
    kinds = ["flat", "ivf"] + (["hnsw"] if n <= args.hnsw_max else [])
    for kind in kinds:
        index = KnowledgeIndex.build(corpus, kind=kind)
        start = time.perf_counter()
        _, found = index.search(queries, args.k)
        query_seconds = time.perf_counter() - start
        info = index.stats()
        label = {
            "flat": "faiss IndexFlatIP",
            "ivf": f"faiss IVF nlist={info.get('nlist')} nprobe={info.get('nprobe')}",
            "hnsw": f"faiss HNSW M={info.get('hnsw_m')} efS={info.get('ef_search')}",
        }[kind]
        row = dict(n=n, method=label, build=info["build_seconds"], query=query_seconds, recall=recall(found, exact))
        rows.append(row)
        print(f"#   {label}: built in {info['build_seconds']:.1f} s", flush=True)
        del index
    if "hnsw" not in kinds:
        print(f"#   HNSW skipped: {n:,} > --hnsw-max {args.hnsw_max:,}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,1000000", help="comma-separated corpus sizes")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument(
        "--data",
        choices=("uniform", "clustered"),
        default="uniform",
        help="uniform on the sphere, or a random Gaussian mixture with n/100 clusters",
    )
    parser.add_argument("--hnsw-max", type=int, default=200_000, help="largest corpus to build HNSW for")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = [row for n in map(int, args.sizes.split(",")) for row in bench_size(n, args, rng)]
    print(f"\n{args.data} data, {args.queries} queries, top-{args.k}, dim {args.dim}; speed-up vs numpy query time")
    header = (
        f"{'vectors':>10} | {'method':<34} | {'build s':>8} | {'query s':>8} | {'queries/s':>10} | "
        f"{'speed-up':>8} | {'recall':>6}"
    )
    print(header + "\n" + "-" * len(header))
    for row in rows:
        numpy_query = next(r["query"] for r in rows if r["n"] == row["n"] and r["method"].startswith("numpy"))
        print(
            f"{row['n']:>10,} | {row['method']:<34} | {row['build']:>8.2f} | {row['query']:>8.3f} | "
            f"{args.queries / row['query']:>10,.0f} | {numpy_query / row['query']:>7.1f}x | {row['recall']:>6.3f}"
        )


if __name__ == "__main__":
    main()

"""Image-text retrieval metrics: R@1/5/10, RSUM, mean/median rank, both directions, with ALBEF ITM re-ranking.

Positives are given by groups: gallery item j answers query q iff `query_groups[q] == gallery_groups[j]`.
- Caption retrieval (COCO/Flickr30K): image group = image index, text group = the index of its image, so an image
  has any number of correct captions and duplicate caption strings stay separate texts.
- Class-level retrieval (the wvlp corpus): groups are class ids, so every text of the image's class is a hit.

Rank convention (pessimistic ties): the rank of a query is 1 + the number of negatives scoring >= its best positive,
i.e. the gallery is ordered by (score descending, negatives before positives on equal scores, lower index first) and
the rank is the 1-based position of the first positive. A positive tied with negatives takes the worst position
among them, so a collapsed model that scores every pair the same gets R@K = 0, never a lucky R@1 from the gallery
order. The ITM candidates (the top-k) are the first k items of that same order.

ALBEF protocol: rank the gallery by ITC similarity, then re-sort each query's top-k by the ITM score (ties again
negatives first, then ITC order). Items below the top-k keep their place, so re-ranking changes ranks <= k only.

Memory: similarities are computed in blocks of `chunk_size` queries against the whole gallery, so the full
Q x G matrix exists only with `chunk_size=None`; galleries of `faiss_threshold` items or more go through a faiss
flat inner-product index, with an exact fallback for the queries whose answer is not settled by its candidate list.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

RECALL_KS = (1, 5, 10)
FAISS_THRESHOLD = 10_000  # bench/retrieval_eval.py: faiss beats chunked torch in time and memory at 25k
# faiss candidates beyond the top-k: room for the best positive and for ties at the k-th score.
FAISS_EXTRA_CANDIDATES = 32

PairScores = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Ranking:
    """Per-query result: `ranks` (Q,) 1-based rank of the best positive; `topk` (Q, k) gallery indices in rank order.

    `queries` (Q,) are the indices of the ranked queries in the full query set (all of them unless some were dropped).
    """

    ranks: np.ndarray
    topk: np.ndarray
    queries: np.ndarray | None = None


def as_groups(groups: Sequence[int] | np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """`groups` as a 1-D int64 array (clear error otherwise)."""
    array = np.asarray(groups.cpu() if isinstance(groups, torch.Tensor) else groups)
    if array.ndim != 1 or not (np.issubdtype(array.dtype, np.integer) or array.size == 0):
        raise ValueError(f"{name} must be a 1-D sequence of integer group ids, got shape {array.shape} {array.dtype}")
    return array.astype(np.int64)


def _order_candidates(scores: np.ndarray, positive: np.ndarray, indices: np.ndarray, k: int) -> np.ndarray:
    """The first k of each row's candidates in rank order: score desc, negatives first on ties, then gallery index."""
    keys = np.stack([indices.astype(np.float64), positive.astype(np.float64), -scores.astype(np.float64)])
    order = np.lexsort(keys, axis=-1)[:, :k]
    return np.take_along_axis(indices, order, axis=1)


def _select_topk(scores: torch.Tensor, positive: torch.Tensor, k: int) -> np.ndarray:
    """Indices (b, k) of the first k gallery items of each row in rank order (see the module docstring)."""
    b, g = scores.shape
    k = min(k, g)
    if k == 0:
        return np.zeros((b, 0), np.int64)
    threshold = scores.topk(k, dim=1).values[:, -1:]
    candidates = scores >= threshold  # at least k per row; more only when the k-th score is tied
    counts = candidates.sum(1)
    out = np.empty((b, k), np.int64)
    exact = (counts == k).nonzero().squeeze(1)
    if len(exact):
        indices = candidates[exact].nonzero()[:, 1].view(len(exact), k)
        out[exact.numpy()] = _order_candidates(
            scores[exact].gather(1, indices).numpy(), positive[exact].gather(1, indices).numpy(), indices.numpy(), k
        )
    for row in (counts != k).nonzero().squeeze(1).tolist():
        indices = candidates[row].nonzero().squeeze(1)
        out[row] = _order_candidates(
            scores[row, indices].numpy()[None], positive[row, indices].numpy()[None], indices.numpy()[None], k
        )[0]
    return out


def _rank_block(scores: torch.Tensor, positive: torch.Tensor, k: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Ranks and top-k of one block of queries (rows `offset`.. of the query set)."""
    if torch.isnan(scores).any():
        raise ValueError(f"similarity scores of queries {offset}..{offset + len(scores) - 1} contain NaN")
    has_positive = positive.any(1)
    if not has_positive.all():
        first = offset + int((~has_positive).nonzero()[0])
        raise ValueError(f"query {first} has no positive in the gallery (its group id matches no gallery item)")
    best = scores.masked_fill(~positive, float("-inf")).amax(1, keepdim=True)
    ranks = 1 + ((scores >= best) & ~positive).sum(1)
    return ranks.numpy().astype(np.int64), _select_topk(scores, positive, k)


def rank_scores(
    scores: torch.Tensor | np.ndarray,
    query_groups: Sequence[int],
    gallery_groups: Sequence[int],
    k: int = max(RECALL_KS),
    chunk_size: int | None = 1024,
) -> Ranking:
    """Ranking of a given (Q, G) score matrix, processed `chunk_size` rows at a time."""
    scores = torch.as_tensor(scores).float()
    query, gallery = as_groups(query_groups, "query_groups"), as_groups(gallery_groups, "gallery_groups")
    if scores.shape != (len(query), len(gallery)):
        raise ValueError(
            f"scores has shape {tuple(scores.shape)}, expected (len(query_groups), len(gallery_groups)) "
            f"= {(len(query), len(gallery))}"
        )
    step = chunk_size or max(1, len(query))
    gallery_t = torch.from_numpy(gallery)
    blocks = [
        _rank_block(scores[s : s + step], torch.from_numpy(query[s : s + step])[:, None] == gallery_t, k, s)
        for s in range(0, len(query), step)
    ]
    return _concat(blocks, len(gallery), k)


def _concat(blocks: list[tuple[np.ndarray, np.ndarray]], gallery_size: int, k: int) -> Ranking:
    if not blocks:
        return Ranking(np.zeros(0, np.int64), np.zeros((0, min(k, gallery_size)), np.int64))
    return Ranking(np.concatenate([b[0] for b in blocks]), np.concatenate([b[1] for b in blocks]))


def _check_features(
    query_features: torch.Tensor, gallery_features: torch.Tensor, query: np.ndarray, gallery: np.ndarray
) -> None:
    if (
        query_features.dim() != 2
        or gallery_features.dim() != 2
        or query_features.shape[1] != gallery_features.shape[1]
    ):
        raise ValueError(
            f"query_features {tuple(query_features.shape)} and gallery_features "
            f"{tuple(gallery_features.shape)} must be (N, D) matrices with the same D"
        )
    if len(query) != len(query_features) or len(gallery) != len(gallery_features):
        raise ValueError(
            f"{len(query_features)} query features but {len(query)} query groups, or "
            f"{len(gallery_features)} gallery features but {len(gallery)} gallery groups"
        )
    if len(gallery) == 0:
        raise ValueError("the gallery is empty")


def rank_gallery(
    query_features: torch.Tensor,
    gallery_features: torch.Tensor,
    query_groups: Sequence[int],
    gallery_groups: Sequence[int],
    k: int = max(RECALL_KS),
    chunk_size: int | None = 1024,
    backend: str = "auto",
    faiss_threshold: int = FAISS_THRESHOLD,
) -> Ranking:
    """Ranking of the gallery for each query by inner product of the features (cosine for normalised ones).

    `backend`: "torch" (blocks of `chunk_size` queries; `None` = one full matrix), "faiss" (flat IP index), or
    "auto" (faiss when the gallery has `faiss_threshold` items or more). All give the same ranks.
    """
    query_features, gallery_features = (
        torch.as_tensor(query_features).float(),
        torch.as_tensor(gallery_features).float(),
    )
    query, gallery = as_groups(query_groups, "query_groups"), as_groups(gallery_groups, "gallery_groups")
    _check_features(query_features, gallery_features, query, gallery)
    if backend not in ("auto", "torch", "faiss"):
        raise ValueError(f"backend={backend!r}: choose 'auto', 'torch' or 'faiss'")
    if backend == "faiss" or (backend == "auto" and len(gallery) >= faiss_threshold):
        return _rank_gallery_faiss(query_features, gallery_features, query, gallery, k, chunk_size or len(query))
    step = chunk_size or max(1, len(query))
    gallery_t = torch.from_numpy(gallery)
    blocks = [
        _rank_block(
            query_features[s : s + step] @ gallery_features.T,
            torch.from_numpy(query[s : s + step])[:, None] == gallery_t,
            k,
            s,
        )
        for s in range(0, len(query), step)
    ]
    return _concat(blocks, len(gallery), k)


def _rank_gallery_faiss(
    query_features: torch.Tensor,
    gallery_features: torch.Tensor,
    query: np.ndarray,
    gallery: np.ndarray,
    k: int,
    chunk_size: int,
) -> Ranking:
    """faiss candidates; queries whose rank or top-k the candidate list does not settle are ranked exactly in torch."""
    import faiss

    size, k = len(gallery), min(k, len(gallery))
    index = faiss.IndexFlatIP(gallery_features.shape[1])
    index.add(np.ascontiguousarray(gallery_features.numpy(), dtype=np.float32))
    length = min(size, k + FAISS_EXTRA_CANDIDATES)
    ranks, topk = np.empty(len(query), np.int64), np.empty((len(query), k), np.int64)
    for start in range(0, len(query), chunk_size):
        block = np.ascontiguousarray(query_features[start : start + chunk_size].numpy(), dtype=np.float32)
        scores, indices = index.search(block, length)
        positive = gallery[indices] == query[start : start + len(block), None]
        last = scores[:, -1:]
        best = np.where(positive, scores, -np.inf).max(1, keepdims=True)
        # Settled when every item scoring >= the best positive (resp. >= the k-th score) is in the list.
        settled = positive.any(1)
        if length < size:
            settled &= (best[:, 0] > last[:, 0]) & (scores[:, k - 1] > last[:, 0] if k else True)
        rows = np.flatnonzero(settled)
        ranks[start + rows] = 1 + ((scores[rows] >= best[rows]) & ~positive[rows]).sum(1)
        topk[start + rows] = _order_candidates(scores[rows], positive[rows], indices[rows], k)
        rest = start + np.flatnonzero(~settled)
        if len(rest):  # one exact block for the unsettled queries of this chunk
            rest_t = torch.from_numpy(rest)
            ranks[rest], topk[rest] = _rank_block(
                query_features[rest_t] @ gallery_features.T,
                torch.from_numpy(query[rest])[:, None] == torch.from_numpy(gallery),
                k,
                int(rest[0]),
            )
    return Ranking(ranks, topk)


def rerank_top_k(
    ranking: Ranking, query_groups: Sequence[int], gallery_groups: Sequence[int], k: int, pair_scores: PairScores
) -> Ranking:
    """ALBEF re-ranking: each query's top-k re-sorted by `pair_scores(query_index, gallery_index)` (higher = better).

    Ties on the pair score put negatives first, then keep the ITC order. Ranks > k are unchanged.
    """
    query, gallery = as_groups(query_groups, "query_groups"), as_groups(gallery_groups, "gallery_groups")
    if k < 1 or k > ranking.topk.shape[1]:
        raise ValueError(f"itm k={k} must be in 1..{ranking.topk.shape[1]} (the candidates kept per query)")
    candidates = ranking.topk[:, :k]
    num = len(candidates)
    query_index = np.repeat(np.arange(num), k)
    pair = np.asarray(pair_scores(query_index, candidates.ravel()), dtype=np.float64).reshape(num, k)
    if np.isnan(pair).any():
        raise ValueError("pair_scores returned NaN")
    positive = gallery[candidates] == query[:, None]
    itc_position = np.broadcast_to(np.arange(k, dtype=np.float64), (num, k))
    order = np.lexsort(np.stack([itc_position, positive.astype(np.float64), -pair]), axis=-1)
    best = np.where(positive, pair, -np.inf).max(1, keepdims=True)
    reranked = 1 + ((pair >= best) & ~positive).sum(1)
    ranks = np.where(positive.any(1), reranked, ranking.ranks)
    topk = np.concatenate([np.take_along_axis(candidates, order, axis=1), ranking.topk[:, k:]], axis=1)
    return Ranking(ranks.astype(np.int64), topk, ranking.queries)


def rank_metrics(ranks: np.ndarray, prefix: str, ks: Sequence[int] = RECALL_KS) -> dict[str, float]:
    """`{prefix}_r{k}` recalls (fractions) and `{prefix}_mean_rank`/`{prefix}_median_rank` (1-based)."""
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        raise ValueError(f"{prefix}: no queries to score")
    metrics = {f"{prefix}_r{k}": float(np.mean(ranks <= k)) for k in ks}
    metrics[f"{prefix}_mean_rank"] = float(np.mean(ranks))
    metrics[f"{prefix}_median_rank"] = float(np.median(ranks))
    return metrics


def retrieval_metrics(i2t_ranks: np.ndarray, t2i_ranks: np.ndarray) -> dict[str, float]:
    """The eval-JSON retrieval block: R@1/5/10 both ways, `rsum` (sum of the six recalls as fractions, 0..6), ranks."""
    i2t, t2i = rank_metrics(i2t_ranks, "i2t"), rank_metrics(t2i_ranks, "t2i")
    rsum = sum(i2t[f"i2t_r{k}"] + t2i[f"t2i_r{k}"] for k in RECALL_KS)
    keys = [f"{d}_r{k}" for d in ("i2t", "t2i") for k in RECALL_KS]
    merged = {**i2t, **t2i}
    return {
        **{key: merged[key] for key in keys},
        "rsum": float(rsum),
        **{f"{d}_{s}_rank": merged[f"{d}_{s}_rank"] for d in ("i2t", "t2i") for s in ("mean", "median")},
    }


@dataclass
class RetrievalResult:
    """Rankings of both directions, ITC-only and (when re-ranked) after ITM; `metrics()` gives the JSON block."""

    i2t: Ranking
    t2i: Ranking
    itm_k: int = 0
    i2t_itm: Ranking | None = None
    t2i_itm: Ranking | None = None
    extra: dict = field(default_factory=dict)

    def metrics(self) -> dict:
        """`{"itm_k", "itc": {...}, "itm": {...}}` (no "itm" without re-ranking)."""
        out = {"itm_k": self.itm_k, "itc": retrieval_metrics(self.i2t.ranks, self.t2i.ranks)}
        if self.i2t_itm is not None and self.t2i_itm is not None:
            out["itm"] = retrieval_metrics(self.i2t_itm.ranks, self.t2i_itm.ranks)
        return out


def evaluate_retrieval(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    image_groups: Sequence[int],
    text_groups: Sequence[int],
    itm_k: int = 0,
    itm_scores: PairScores | None = None,
    chunk_size: int | None = 1024,
    backend: str = "auto",
    faiss_threshold: int = FAISS_THRESHOLD,
    drop_unanswerable: bool = False,
) -> RetrievalResult:
    """Both directions by ITC; with `itm_k > 0` and `itm_scores(image_index, text_index)`, also ITM re-ranked.

    `drop_unanswerable`: leave out queries that no gallery item answers (e.g. an image of a class without texts in
    class-level retrieval) instead of raising; the galleries stay whole.
    """
    if itm_k and itm_scores is None:
        raise ValueError(f"itm_k={itm_k} needs itm_scores (the ITM score of (image, text) index pairs)")
    image_groups, text_groups = as_groups(image_groups, "image_groups"), as_groups(text_groups, "text_groups")
    k = max(max(RECALL_KS), itm_k)
    options = dict(k=k, chunk_size=chunk_size, backend=backend, faiss_threshold=faiss_threshold)

    def direction(query_features, gallery_features, query_groups, gallery_groups, pair_scores):
        queries = (
            np.flatnonzero(np.isin(query_groups, gallery_groups))
            if drop_unanswerable
            else np.arange(len(query_groups))
        )
        if len(queries) == 0:
            raise ValueError("no query has a correct answer in the gallery (do the image and text groups overlap?)")
        ranking = rank_gallery(
            torch.as_tensor(query_features)[torch.from_numpy(queries)],
            gallery_features,
            query_groups[queries],
            gallery_groups,
            **options,
        )
        ranking.queries = queries
        if not itm_k:
            return ranking, None
        reranked = rerank_top_k(
            ranking,
            query_groups[queries],
            gallery_groups,
            min(itm_k, ranking.topk.shape[1]),
            lambda q, g: pair_scores(queries[q], g),
        )
        return ranking, reranked

    i2t, i2t_itm = direction(image_features, text_features, image_groups, text_groups, itm_scores)
    t2i, t2i_itm = direction(
        text_features, image_features, text_groups, image_groups, lambda texts, images: itm_scores(images, texts)
    )
    return RetrievalResult(i2t, t2i, itm_k, i2t_itm, t2i_itm)


def retrieval_examples(
    ranking: Ranking,
    texts: Sequence[str],
    text_groups: Sequence[int],
    image_groups: Sequence[int],
    num_queries: int = 8,
    top: int = 5,
) -> list[dict]:
    """JSON-able text-to-image examples for `plots.plot_retrieval_examples`: query, top image indices, hit flags."""
    text_groups, image_groups = as_groups(text_groups, "text_groups"), as_groups(image_groups, "image_groups")
    queries = ranking.queries if ranking.queries is not None else np.arange(len(ranking.ranks))
    rows = len(queries)
    picks = np.linspace(0, rows - 1, min(num_queries, rows)).round().astype(int) if rows else []
    examples = []
    for row in dict.fromkeys(int(p) for p in picks):
        q, images = int(queries[row]), ranking.topk[row, :top].tolist()
        examples.append(
            {
                "query": texts[q],
                "rank": int(ranking.ranks[row]),
                "image_indices": images,
                "correct": [bool(image_groups[i] == text_groups[q]) for i in images],
            }
        )
    return examples

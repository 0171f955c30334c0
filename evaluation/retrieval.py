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
BLIP-style fusion re-sorts the top-k by `w * ITC cosine + (1 - w) * ITM probability` instead: w = 0 is ALBEF's
ITM-only re-rank, w = 1 keeps the ITC order. `choose_fusion` picks w and k on validation queries, with w = 1 in the
grid, so the chosen re-rank is never below ITC alone on the data it was chosen on (an ITM head that learned little
-- a short pre-training -- otherwise turns re-ranking into a loss).

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

# Weight of the ITC cosine in the fused score, and re-ranking depths, that `choose_fusion` tries.
FUSION_ITC_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)
FUSION_KS = (4, 8, 16, 32, 64, 128)

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
    pair = np.asarray(pair_scores(np.repeat(np.arange(num), k), candidates.ravel()), dtype=np.float64)
    return _rerank(ranking, gallery[candidates] == query[:, None], pair.reshape(num, k))


def _rerank(ranking: Ranking, positive: np.ndarray, pair: np.ndarray) -> Ranking:
    """`ranking` with each query's first `pair.shape[1]` candidates re-sorted by `pair` (Q, k); `positive` (Q, k)."""
    if np.isnan(pair).any():
        raise ValueError("pair_scores returned NaN")
    num, k = pair.shape
    itc_position = np.broadcast_to(np.arange(k, dtype=np.float64), (num, k))
    order = np.lexsort(np.stack([itc_position, positive.astype(np.float64), -pair]), axis=-1)
    best = np.where(positive, pair, -np.inf).max(1, keepdims=True)
    reranked = 1 + ((pair >= best) & ~positive).sum(1)
    ranks = np.where(positive.any(1), reranked, ranking.ranks)
    topk = np.concatenate([np.take_along_axis(ranking.topk[:, :k], order, axis=1), ranking.topk[:, k:]], axis=1)
    return Ranking(ranks.astype(np.int64), topk, ranking.queries)


@dataclass(frozen=True)
class Fusion:
    """Re-rank each query's top `k` by `itc_weight * ITC cosine + (1 - itc_weight) * ITM probability`.

    `itc_weight` 0 is ALBEF's ITM-only re-rank; 1 keeps the ITC ranking as it is.
    """

    itc_weight: float
    k: int

    def as_dict(self) -> dict:
        """`{"itc_weight", "k"}` for the eval JSON."""
        return {"itc_weight": self.itc_weight, "k": self.k}


@dataclass
class Candidates:
    """Each query's top-K by ITC, as (Q, K) arrays: ITC cosine, ITM probability, and whether it answers the query."""

    itc: np.ndarray
    itm: np.ndarray
    positive: np.ndarray


def fused_ranking(ranking: Ranking, candidates: Candidates, fusion: Fusion) -> Ranking:
    """`ranking` re-ranked by `fusion` over the precomputed `candidates` (exactly `ranking` for itc_weight 1)."""
    depth = candidates.itm.shape[1]
    if not 1 <= fusion.k <= depth or not 0.0 <= fusion.itc_weight <= 1.0:
        raise ValueError(f"{fusion}: k must be in 1..{depth} (the ITM candidates kept) and itc_weight in [0, 1]")
    if fusion.itc_weight == 1.0:  # recomputed cosines could differ from the ranking's in the last bit
        return ranking
    w, k = fusion.itc_weight, fusion.k
    pair = w * candidates.itc[:, :k].astype(np.float64) + (1.0 - w) * candidates.itm[:, :k].astype(np.float64)
    return _rerank(ranking, candidates.positive[:, :k], pair)


def choose_fusion(
    ranking: Ranking,
    candidates: Candidates,
    itc_weights: Sequence[float] = FUSION_ITC_WEIGHTS,
    ks: Sequence[int] = FUSION_KS,
    min_z: float = 2.0,
) -> tuple[Fusion, list[dict]]:
    """The fusion with the best R@1 (then R@5; ties: the larger ITC weight, then the smaller k) and every tried one.

    Depths: those of `ks` below the candidates kept, and that number itself. Run it on validation queries, never
    the test split. ITC weight 1 (the ITC ranking itself) is always tried, and a re-rank replaces it only when its
    R@1 gain is significant in a paired sign test (queries it fixes minus queries it breaks > `min_z` * sqrt of
    their sum): picking the best of a grid on a few dozen queries otherwise selects noise, as a random ITM head shows.
    """
    depth = candidates.itm.shape[1]
    depths = sorted({int(k) for k in ks if 1 <= k < depth} | {depth})  # always the full depth kept
    grid = [Fusion(float(w), k) for w in sorted({*itc_weights, 1.0}) for k in depths]
    tried, hits = [], []
    for fusion in grid:
        ranks = fused_ranking(ranking, candidates, fusion).ranks
        hits.append(ranks <= 1)
        tried.append({**fusion.as_dict(), "r1": float(np.mean(ranks <= 1)), "r5": float(np.mean(ranks <= 5))})
    best = max(range(len(grid)), key=lambda i: (tried[i]["r1"], tried[i]["r5"], grid[i].itc_weight, -grid[i].k))
    itc = next(i for i, fusion in enumerate(grid) if fusion.itc_weight == 1.0)
    fixed, broken = int((hits[best] & ~hits[itc]).sum()), int((~hits[best] & hits[itc]).sum())
    if fixed - broken <= min_z * np.sqrt(fixed + broken):
        best = itc
    return grid[best], tried


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
    """Rankings of both directions: ITC, and with ITM candidates also ITM-only (ALBEF) and fused (BLIP-style).

    `candidates` holds each direction's top-`itm_k` scores ("i2t", "t2i"), so `choose_fusion` can try fusions
    without running the ITM head again; `fusion` is the one applied to `i2t_fused` / `t2i_fused`.
    """

    i2t: Ranking
    t2i: Ranking
    itm_k: int = 0
    i2t_itm: Ranking | None = None
    t2i_itm: Ranking | None = None
    i2t_fused: Ranking | None = None
    t2i_fused: Ranking | None = None
    fusion: dict[str, Fusion] | None = None
    candidates: dict[str, Candidates] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def metrics(self) -> dict:
        """`{"itm_k", "itc", "itm", "fused", "fusion", "default"}`; "itm" only with ITM candidates, "fused" and
        "fusion" only with a fusion. `default` names the block to quote: "fused" when there is one, else "itc"."""
        out = {"itm_k": self.itm_k, "itc": retrieval_metrics(self.i2t.ranks, self.t2i.ranks)}
        if self.i2t_itm is not None and self.t2i_itm is not None:
            out["itm"] = retrieval_metrics(self.i2t_itm.ranks, self.t2i_itm.ranks)
        if self.i2t_fused is not None and self.t2i_fused is not None and self.fusion:
            out["fused"] = retrieval_metrics(self.i2t_fused.ranks, self.t2i_fused.ranks)
            out["fusion"] = {direction: fusion.as_dict() for direction, fusion in self.fusion.items()}
        out["default"] = "fused" if "fused" in out else "itc"
        return out


def candidate_scores(
    ranking: Ranking,
    query_features: torch.Tensor,
    gallery_features: torch.Tensor,
    query_groups: np.ndarray,
    gallery_groups: np.ndarray,
    k: int,
    pair_scores: PairScores,
    chunk_size: int = 1024,
) -> Candidates:
    """ITC cosines, `pair_scores` and positives of each ranked query's top-k (rows: `ranking.queries`)."""
    queries = ranking.queries if ranking.queries is not None else np.arange(len(ranking.ranks))
    top = ranking.topk[:, :k]
    itc = np.empty(top.shape, np.float32)
    for s in range(0, len(top), chunk_size):
        rows = torch.from_numpy(top[s : s + chunk_size])
        block = torch.as_tensor(query_features)[torch.from_numpy(queries[s : s + chunk_size])]
        itc[s : s + chunk_size] = torch.einsum("qd,qkd->qk", block, gallery_features[rows]).numpy()
    pair = np.asarray(pair_scores(np.repeat(queries, top.shape[1]), top.ravel()), dtype=np.float32)
    if np.isnan(pair).any():
        raise ValueError("pair_scores returned NaN")
    return Candidates(itc, pair.reshape(top.shape), gallery_groups[top] == query_groups[queries][:, None])


def evaluate_retrieval(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    image_groups: Sequence[int],
    text_groups: Sequence[int],
    itm_k: int = 0,
    itm_scores: PairScores | None = None,
    fusion: dict[str, Fusion] | None = None,
    chunk_size: int | None = 1024,
    backend: str = "auto",
    faiss_threshold: int = FAISS_THRESHOLD,
    drop_unanswerable: bool = False,
) -> RetrievalResult:
    """Both directions by ITC; with `itm_k > 0` and `itm_scores(image_index, text_index)`, also ITM re-ranked.

    `fusion` ({"i2t": Fusion, "t2i": Fusion}, k <= itm_k) adds the fused re-rank of each direction.
    `drop_unanswerable`: leave out queries that no gallery item answers (e.g. an image of a class without texts in
    class-level retrieval) instead of raising; the galleries stay whole.

    Examples:

    ```python
    >>> result = evaluate_retrieval(image_embeds, text_embeds, image_groups, text_groups, itm_k=16, itm_scores=itm)
    >>> fusion = {d: choose_fusion(getattr(result, d), result.candidates[d])[0] for d in ("i2t", "t2i")}
    ```
    (on validation data; then pass `fusion=fusion` for the test split)
    """
    if itm_k and itm_scores is None:
        raise ValueError(f"itm_k={itm_k} needs itm_scores (the ITM score of (image, text) index pairs)")
    if fusion is not None and (not itm_k or set(fusion) != {"i2t", "t2i"}):
        raise ValueError(f"fusion={fusion!r} needs itm_k > 0 and one Fusion for each of 'i2t' and 't2i'")
    image_groups, text_groups = as_groups(image_groups, "image_groups"), as_groups(text_groups, "text_groups")
    image_features, text_features = torch.as_tensor(image_features).float(), torch.as_tensor(text_features).float()
    options = dict(
        k=max(max(RECALL_KS), itm_k), chunk_size=chunk_size, backend=backend, faiss_threshold=faiss_threshold
    )
    result = RetrievalResult(None, None, itm_k, fusion=fusion)  # type: ignore[arg-type]
    sides = {
        "i2t": (image_features, text_features, image_groups, text_groups, itm_scores),
        "t2i": (text_features, image_features, text_groups, image_groups, lambda t, i: itm_scores(i, t)),
    }
    for direction, (query_features, gallery_features, query_groups, gallery_groups, pair_scores) in sides.items():
        queries = (
            np.flatnonzero(np.isin(query_groups, gallery_groups))
            if drop_unanswerable
            else np.arange(len(query_groups))
        )
        if len(queries) == 0:
            raise ValueError("no query has a correct answer in the gallery (do the image and text groups overlap?)")
        ranking = rank_gallery(
            query_features[torch.from_numpy(queries)],
            gallery_features,
            query_groups[queries],
            gallery_groups,
            **options,
        )
        ranking.queries = queries
        setattr(result, direction, ranking)
        if not itm_k:
            continue
        k = min(itm_k, ranking.topk.shape[1])
        candidates = candidate_scores(
            ranking, query_features, gallery_features, query_groups, gallery_groups, k, pair_scores
        )
        result.candidates[direction] = candidates
        setattr(result, f"{direction}_itm", fused_ranking(ranking, candidates, Fusion(0.0, k)))
        if fusion is not None:
            setattr(result, f"{direction}_fused", fused_ranking(ranking, candidates, fusion[direction]))
    return result


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

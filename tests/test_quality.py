"""Description quality (wvlp.data.quality) on a 3-class toy corpus, against values computed by hand."""

import numpy as np
import pytest

from wvlp.data.quality import description_quality, distinct_n, mean_pairwise_similarity, quality_table

E1, E2, E3 = np.eye(3, dtype=np.float32)
# A: two copies of e1. B: e2 and (0.8, 0.6, 0), which sits nearer A's prompt (0.8) than B's (0.6). C: e3 alone.
EMBEDDINGS = np.stack([E1, E1, E2, np.array([0.8, 0.6, 0.0], np.float32), E3])
LABELS = [0, 0, 1, 1, 2]
TEXTS = ["Red round apple.", "red apple", "a yellow banana", "a banana, yellow and red", "Cherry!"]
NAMES = ["apple", "banana", "cherry"]


def test_quality_matches_hand_computed_values():
    quality = description_quality(TEXTS, LABELS, NAMES, EMBEDDINGS, np.stack([E1, E2, E3]))
    apple, banana, cherry = (quality["per_class"][name] for name in NAMES)
    # Nearest prompt: both apples right, the second banana goes to apple (0.8 > 0.6), the cherry right.
    assert (apple["nearest_prompt_accuracy"], banana["nearest_prompt_accuracy"]) == (1.0, 0.5)
    assert cherry["nearest_prompt_accuracy"] == 1.0 and quality["nearest_prompt_accuracy"] == pytest.approx(4 / 5)
    assert quality["confusions"] == [{"description_of": "banana", "nearest_prompt": "apple", "count": 1}]
    # Leave-one-out centroids: the second banana sees banana = e2 (0.6) and apple = e1 (0.8): wrong; the first sees
    # banana = (0.8, 0.6, 0) (0.6) and apple (0): right. The cherry has no centroid of its own left: wrong.
    assert (apple["nearest_centroid_accuracy"], banana["nearest_centroid_accuracy"]) == (1.0, 0.5)
    assert cherry["nearest_centroid_accuracy"] == 0.0 and quality["nearest_centroid_accuracy"] == pytest.approx(3 / 5)
    # "red round apple" + "red apple": unigrams red round apple red apple (3 of 5 distinct), bigrams all 3 distinct.
    assert apple["distinct_1"] == pytest.approx(3 / 5) and apple["distinct_2"] == 1.0
    # banana: "a yellow banana" + "a banana yellow and red": 8 unigrams, 5 distinct (a yellow banana and red);
    # bigrams (a yellow) (yellow banana) | (a banana) (banana yellow) (yellow and) (and red): 6, all distinct.
    assert banana["distinct_1"] == pytest.approx(5 / 8) and banana["distinct_2"] == 1.0
    assert (apple["mean_pairwise_similarity"], banana["mean_pairwise_similarity"]) == (1.0, pytest.approx(0.6))
    assert cherry["mean_pairwise_similarity"] is None and cherry["count"] == 1
    assert quality["mean_pairwise_similarity"] == pytest.approx((1.0 + 0.6) / 2)  # classes with a pair only
    table = quality_table(quality)
    assert table[2].startswith("| apple | 2 | 100% | 100% |") and table[-1].startswith("| **all** | 5 | 80% | 60% |")


def test_distinct_n_and_similarity_edge_cases():
    assert distinct_n(["one"], 2) == 0.0 and distinct_n([], 1) == 0.0
    assert distinct_n(["a a a a"], 1) == pytest.approx(1 / 4)
    assert mean_pairwise_similarity(E1[None]) is None
    rows = np.stack([E1, E2, np.array([0.6, 0.8, 0.0])])  # pairs: 0, 0.6, 0.8
    assert mean_pairwise_similarity(rows) == pytest.approx((0.0 + 0.6 + 0.8) / 3)


def test_bad_inputs_are_named():
    prompts = np.stack([E1, E2, E3])
    with pytest.raises(ValueError, match="5 texts, 4 labels"):
        description_quality(TEXTS, LABELS[:4], NAMES, EMBEDDINGS, prompts)
    with pytest.raises(ValueError, match="2 prompt embeddings for 3 classes"):
        description_quality(TEXTS, LABELS, NAMES, EMBEDDINGS, prompts[:2])
    with pytest.raises(ValueError, match="labels must be in 0..2"):
        description_quality(TEXTS, [0, 0, 1, 1, 3], NAMES, EMBEDDINGS, prompts)

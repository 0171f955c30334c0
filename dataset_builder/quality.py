"""How informative the kept descriptions are: discriminability under a frozen sentence embedder, and diversity.

Cleaning drops refusals, duplicates and off-topic text; it cannot tell "The dress is placed in a position of relative
gravity" from a description a model could learn the category from. These numbers can:
- *discriminability*: each description classified to the nearest class (cosine of L2-normalised embeddings) against
  class-name prompts, and against the description centroids of the classes, its own class's centroid computed without
  it (leave-one-out, so a description does not vote for itself); accuracy per class and overall, and the most frequent
  confusions;
- *diversity*: distinct-n (distinct n-grams / all n-grams of a class's descriptions, lower-cased words), and the mean
  pairwise cosine similarity of a class's descriptions (1 = all the same sentence).
"""

from collections import Counter
from collections.abc import Sequence

import numpy as np

# Class-name prompts the descriptions are classified against (averaged per class, as zero-shot classifiers are).
CLASS_PROMPTS = ("a photo of a {}.", "a {}.", "a product photo of a {}.")


def words(text: str) -> list[str]:
    """Lower-cased whitespace words with surrounding punctuation stripped (empty ones dropped)."""
    stripped = (word.strip(".,;:!?\"'()[]") for word in text.lower().split())
    return [word for word in stripped if word]


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams over all n-grams of `texts` (0 when they hold none)."""
    grams = [tuple(ws[i : i + n]) for ws in map(words, texts) for i in range(len(ws) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def mean_pairwise_similarity(embeddings: np.ndarray) -> float | None:
    """Mean cosine similarity over distinct pairs of L2-normalised rows (None for fewer than two rows)."""
    n = len(embeddings)
    if n < 2:
        return None
    gram = embeddings @ embeddings.T
    return float((gram.sum() - np.trace(gram)) / (n * (n - 1)))


def leave_one_out_centroid_predictions(embeddings: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Nearest class centroid of each row, its own class's centroid taken without it (a class of one: never chosen)."""
    sums = np.zeros((num_classes, embeddings.shape[1]), np.float64)
    np.add.at(sums, labels, embeddings)
    counts = np.bincount(labels, minlength=num_classes)
    scores = np.empty((len(embeddings), num_classes))
    for row, (embedding, label) in enumerate(zip(embeddings, labels)):
        centroids = sums.copy()
        sizes = counts.astype(np.float64)
        centroids[label] -= embedding
        sizes[label] -= 1
        norms = np.linalg.norm(centroids, axis=1)
        usable = (sizes > 0) & (norms > 0)
        scores[row] = np.where(usable, centroids @ embedding / np.where(usable, norms, 1.0), -np.inf)
    return scores.argmax(axis=1)


def description_quality(
    texts: Sequence[str],
    labels: Sequence[int],
    class_names: Sequence[str],
    embeddings: np.ndarray,
    prompt_embeddings: np.ndarray,
    max_confusions: int = 5,
) -> dict:
    """Discriminability and diversity of `texts`, per class (keyed by name) and in total.

    `embeddings` (N, D) and `prompt_embeddings` (C, D) are L2-normalised; row c of `prompt_embeddings` is class c's
    prompt ensemble.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if len(texts) != len(labels) or len(labels) != len(embeddings):
        raise ValueError(
            f"description_quality: {len(texts)} texts, {len(labels)} labels and {len(embeddings)} embeddings differ"
        )
    if prompt_embeddings.shape[0] != len(class_names):
        raise ValueError(
            f"description_quality: {prompt_embeddings.shape[0]} prompt embeddings for {len(class_names)} classes"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise ValueError(f"description_quality: labels must be in 0..{len(class_names) - 1}")
    by_prompt = (embeddings @ prompt_embeddings.T).argmax(axis=1) if len(labels) else labels
    by_centroid = leave_one_out_centroid_predictions(embeddings, labels, len(class_names)) if len(labels) else labels
    per_class = {}
    for c, name in enumerate(class_names):
        mask = labels == c
        if not mask.any():
            continue
        members = [t for t, keep in zip(texts, mask) if keep]
        similarity = mean_pairwise_similarity(embeddings[mask])
        per_class[name] = {
            "count": int(mask.sum()),
            "nearest_prompt_accuracy": float((by_prompt[mask] == c).mean()),
            "nearest_centroid_accuracy": float((by_centroid[mask] == c).mean()),
            "distinct_1": distinct_n(members, 1),
            "distinct_2": distinct_n(members, 2),
            "mean_pairwise_similarity": None if similarity is None else round(similarity, 4),
        }
    similarities = [row["mean_pairwise_similarity"] for row in per_class.values()]
    similarities = [value for value in similarities if value is not None]
    confusions = Counter(
        (class_names[true], class_names[pred]) for true, pred in zip(labels, by_prompt) if true != pred
    )
    return {
        "embedder_prompts": list(CLASS_PROMPTS),
        "nearest_prompt_accuracy": float((by_prompt == labels).mean()) if len(labels) else None,
        "nearest_centroid_accuracy": float((by_centroid == labels).mean()) if len(labels) else None,
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        # the mean over classes of their within-class similarity (across classes it would measure separation)
        "mean_pairwise_similarity": round(float(np.mean(similarities)), 4) if similarities else None,
        "confusions": [
            {"description_of": true, "nearest_prompt": pred, "count": count}
            for (true, pred), count in confusions.most_common(max_confusions)
        ],
        "per_class": per_class,
    }


def quality_table(quality: dict) -> list[str]:
    """Markdown lines of the dataset card's description-quality section."""
    lines = [
        "| class | kept | nearest class-name prompt | nearest class centroid | distinct-1 | distinct-2 | mean pairwise cos |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in quality["per_class"].items():
        similarity = "-" if row["mean_pairwise_similarity"] is None else f"{row['mean_pairwise_similarity']:.2f}"
        lines.append(
            f"| {name} | {row['count']} | {row['nearest_prompt_accuracy']:.0%} | {row['nearest_centroid_accuracy']:.0%} "
            f"| {row['distinct_1']:.2f} | {row['distinct_2']:.2f} | {similarity} |"
        )
    if quality["nearest_prompt_accuracy"] is not None:
        lines.append(
            f"| **all** | {sum(r['count'] for r in quality['per_class'].values())} | "
            f"{quality['nearest_prompt_accuracy']:.0%} | {quality['nearest_centroid_accuracy']:.0%} | "
            f"{quality['distinct_1']:.2f} | {quality['distinct_2']:.2f} | "
            f"{'-' if quality.get('mean_pairwise_similarity') is None else format(quality['mean_pairwise_similarity'], '.2f')} |"
        )
    return lines

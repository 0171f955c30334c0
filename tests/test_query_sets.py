"""Query sets from outside the training LLM: the CuPL mapping, the leakage check, and the sets of a corpus."""

import json

import numpy as np
import pytest

from wvlp.data.knowledge.corpus import normalize_text
from wvlp.data.query_sets import CUPL_CLASSES, check_leakage, cupl_queries
from wvlp.data.sources import FashionMNISTSource
from wvlp.data.template_corpus import write_template_corpus
from wvlp.evaluation.query_sets import corpus_query_sets

LABELS = [c.name for c in sorted(FashionMNISTSource().classes, key=lambda c: c.label)]


def test_check_leakage_names_the_overlap_and_where():
    queries = ["A sandal has straps over the toes.", "A purse is a small bag."]
    check_leakage("cupl", queries, training_descriptions=["A boot."], knowledge_index=["Jeans are denim trousers."])
    with pytest.raises(ValueError, match=r"'cupl' shares 1 of its 2 sentences with the training descriptions.*sandal"):
        check_leakage("cupl", queries, training_descriptions=["a sandal has straps over the toes"])
    with pytest.raises(ValueError, match=r"with the knowledge index, e.g. 'A purse is a small bag.'"):
        check_leakage("cupl", queries, training_descriptions=[], knowledge_index=["A PURSE is a small bag!"])


def test_cupl_queries_are_the_mapped_classes_sentences_without_clip_templates():
    from pathlib import Path

    import clip_benchmark

    root = Path(clip_benchmark.__file__).parent / "datasets"
    prompts = json.loads(next(root.rglob("cupl_prompts.json")).read_text())["imagenet1k"]
    rows = cupl_queries(LABELS)
    by_class: dict[str, list[str]] = {}
    for row in rows:
        assert LABELS[row["label"]] in CUPL_CLASSES and row["cupl_class"] in CUPL_CLASSES[LABELS[row["label"]]]
        by_class.setdefault(row["cupl_class"], []).append(row["text"])
    assert set(by_class) == {c for cupl in CUPL_CLASSES.values() for c in cupl}
    assert "Shirt" not in {LABELS[row["label"]] for row in rows}  # no ImageNet class is a (non-T) shirt
    for cupl_class, texts in by_class.items():
        assert set(texts) <= {t.strip() for t in prompts[cupl_class]}
        assert not any(normalize_text(t).startswith(("a bad photo of", "a photo of a")) for t in texts)
    with pytest.raises(ValueError, match=r"names \['Bag'\], which are not among the labels"):
        cupl_queries(["Sandal"], {"Bag": ("purse",)})


def test_corpus_query_sets_check_leakage_and_record_sources(tmp_path):
    clean = write_template_corpus(tmp_path / "clean", images_per_split=10)
    sets, skipped = corpus_query_sets(clean, LABELS)
    assert [s.name for s in sets] == ["same-llm-heldout", "cupl"]
    assert set(skipped) == {"cross-llm"} and "no queries config" in skipped["cross-llm"]
    heldout, cupl = sets
    assert heldout.source["llm"] == ["wordnet-templates"] and heldout.source["count"] == len(heldout.texts) > 0
    assert cupl.source["classes"]["Bag"] == list(CUPL_CLASSES["Bag"]) and cupl.source["count"] == len(cupl.texts)
    assert np.all(np.isin(cupl.labels, [LABELS.index(name) for name in CUPL_CLASSES]))

    leaked = cupl.texts[5]
    leaky = write_template_corpus(tmp_path / "leaky", images_per_split=10, extra_knowledge=[leaked])
    sets, skipped = corpus_query_sets(leaky, LABELS)
    assert [s.name for s in sets] == ["same-llm-heldout"] and "knowledge index" in skipped["cupl"]
    with pytest.raises(ValueError, match="query set 'cupl' shares 1 of its"):
        corpus_query_sets(leaky, LABELS, ["cupl"])
    with pytest.raises(LookupError, match="no queries config"):
        corpus_query_sets(leaky, LABELS, ["cross-llm"])
    with pytest.raises(ValueError, match=r"query sets \['gpt4'\] are unknown"):
        corpus_query_sets(leaky, LABELS, ["gpt4"])

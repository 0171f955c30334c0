"""Zero-shot: ensembles against numpy on a tiny random model, seen/unseen/harmonic by hand, prompt-file order."""

import numpy as np
import pytest
import torch
from PIL import Image

from wvlp.data.fashion_mnist import CLASS_NAMES
from wvlp.data.sources import FashionMNISTSource
from wvlp.evaluation.prompt_files import (
    DEFAULT_TEMPLATES,
    FASHION_MNIST_CLASSNAMES,
    classnames_for,
    load_classnames,
    load_templates,
)
from wvlp.evaluation.zero_shot import (
    build_description_classifier,
    build_zero_shot_classifier,
    seen_unseen_accuracy,
    zero_shot_accuracy,
    zero_shot_metrics,
)

from tests.helpers import tiny_config_kwargs


@pytest.fixture(scope="module")
def tiny_model_and_processor():
    from wvlp.modeling import WVLPConfig, WVLPModel, build_default_processor

    torch.manual_seed(0)
    processor = build_default_processor(32)
    kwargs = tiny_config_kwargs()
    kwargs["text_config"] = {**kwargs["text_config"], "vocab_size": len(processor.tokenizer)}
    return WVLPModel(WVLPConfig(**kwargs)).eval(), processor


def numpy_embeddings(model, processor, texts):
    """Each text encoded alone (batch of one), normalised in numpy."""
    rows = []
    for text in texts:
        tokens = processor(text=[text], max_length=32)
        with torch.no_grad():
            raw = model.text_proj(model.text_model.encode(tokens["input_ids"], tokens["attention_mask"]).pooler_output)
        rows.append(raw[0].numpy().astype(np.float64))
    rows = np.stack(rows)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_template_and_description_ensembles_match_numpy(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    names, templates = ["coat", "ankle boot", "bag"], ["a photo of a {}.", "a {} on white.", "{}"]
    classifier = build_zero_shot_classifier(model, processor, names, templates).numpy()
    for c, name in enumerate(names):
        mean = numpy_embeddings(model, processor, [t.format(name) for t in templates]).mean(0)
        np.testing.assert_allclose(classifier[c], mean / np.linalg.norm(mean), atol=1e-5)
    texts, labels = ["a warm coat", "a long coat", "a bag", "boots", "a leather bag"], [0, 0, 2, 1, 2]
    descriptions = build_description_classifier(model, processor, texts, labels, 3).numpy()
    embeddings = numpy_embeddings(model, processor, texts)
    for c in range(3):
        mean = embeddings[np.asarray(labels) == c].mean(0)
        np.testing.assert_allclose(descriptions[c], mean / np.linalg.norm(mean), atol=1e-5)
    with pytest.raises(ValueError, match=r"classes \[1\] have no text"):
        build_description_classifier(model, processor, ["a coat"], [0], 2)
    images = [Image.new("L", (28, 28), v) for v in (0, 90, 200)]
    accuracy = zero_shot_accuracy(model, processor, images, [0, 1, 2], names, templates)
    assert set(accuracy) == {"top1", "top5"} and accuracy["top5"] == 1.0  # top-5 of 3 classes


def test_seen_unseen_harmonic_by_hand():
    logits = torch.tensor([[3.0, 1, 0, 0], [0, 2, 1, 0], [0, 0, 1, 5], [1, 0, 0, 2], [0, 0, 4, 0], [0, 3, 1, 0]])
    labels = [0, 1, 3, 3, 2, 2]  # predictions 0, 1, 3, 3, 2, 1
    metrics, matrix = zero_shot_metrics(logits, labels, ["a", "b", "c", "d"], holdout={2, 3})
    seen, unseen = 2 / 2, 3 / 4
    assert metrics["seen_top1"] == pytest.approx(seen) and metrics["unseen_top1"] == pytest.approx(unseen)
    assert metrics["harmonic"] == pytest.approx(2 * seen * unseen / (seen + unseen))
    assert metrics["top1"] == pytest.approx(5 / 6)
    assert metrics["per_class"] == {"a": 1.0, "b": 1.0, "c": 0.5, "d": 1.0}
    assert matrix[2].tolist() == [0, 1, 1, 0] and matrix.sum() == 6
    no_holdout, _ = zero_shot_metrics(logits, labels, ["a", "b", "c", "d"])
    assert no_holdout["seen_top1"] is None and no_holdout["harmonic"] is None
    assert seen_unseen_accuracy(np.array([1, 0]), np.array([0, 1]), {1})["harmonic"] == 0.0


def test_prompt_files_follow_the_label_ids():
    names = load_classnames(FASHION_MNIST_CLASSNAMES)
    assert names.label_names == CLASS_NAMES
    assert names.prompt_names == tuple(
        c.prompt_name for c in sorted(FashionMNISTSource().classes, key=lambda c: c.label)
    )
    assert names.path == "evaluation/prompts/fashion_mnist_classnames.txt"
    templates = load_templates(DEFAULT_TEMPLATES)
    assert templates[0] == "a photo of a {}." and all(t.count("{}") == 1 for t in templates)
    assert classnames_for(list(CLASS_NAMES)).path == names.path
    assert classnames_for(["x", "y"]).prompt_names == ("x", "y")  # unknown labels: names as they are
    with pytest.raises(ValueError, match="differ from the dataset's labels"):
        classnames_for(list(reversed(CLASS_NAMES)), FASHION_MNIST_CLASSNAMES)

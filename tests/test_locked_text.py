"""The locked-text step: cached pooled text in place of the text tower, against the full step's own text path."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import set_seed

from wvlp.train.collator import DescriptionPool, DistillationCollator
from wvlp.train.config import load_config
from wvlp.train.run import build_model_and_processor
from wvlp.train.text_cache import LockedText, full_step_inputs

TINY = str(Path(__file__).resolve().parent.parent / "train" / "configs" / "tiny.yaml")
TEXTS = ["a red shoe", "a shoe with laces", "a wool coat", "a long coat", "a leather bag", "a small bag"]
KNOWLEDGE = [["footwear"], ["footwear", "laces tie shoes"], ["outerwear"], ["outerwear"], ["a container"], []]


@pytest.fixture
def tiny(tmp_path):
    set_seed(0)
    config = load_config(TINY, ["model.config.queue_size=8"])
    model, processor = build_model_and_processor(config.model)
    pool = DescriptionPool(TEXTS, [0, 0, 1, 1, 2, 2], KNOWLEDGE)
    return model.train(), processor, pool


def cache_of(model, processor, pool, folder) -> LockedText:
    return LockedText.load_or_build(
        model.wvlp, processor.tokenizer, pool, folder, max_length=24, knowledge_max_length=16
    )


def batch_of(processor, pool) -> dict:
    collator = DistillationCollator(
        processor,
        pool,
        max_length=24,
        knowledge_max_length=16,
        num_knowledge=2,
        augmented_view=True,
        text_indices=True,
    )
    rng = np.random.default_rng(0)
    rows = [
        {"image": Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)), "label": i % 3, "image_id": i}
        for i in range(6)
    ]
    return collator(rows)


def test_locked_step_equals_the_full_step_without_itm_mlm_and_leaves_the_text_tower_untouched(tiny, tmp_path):
    model, processor, pool = tiny
    cache = cache_of(model, processor, pool, tmp_path)
    batch = batch_of(processor, pool)
    # The reference embeds the texts with the text tower inside the forward; ITM and MLM, which a locked step
    # cannot compute, are switched off there.
    reference = copy.deepcopy(model)
    reference.config.pretraining_config.itm_loss_weight = reference.config.pretraining_config.mlm_loss_weight = 0.0
    torch.manual_seed(0)  # the image tower's dropout draws the same masks in both
    expected = reference(**full_step_inputs(batch), alpha=0.4)
    torch.manual_seed(0)
    out = model(**cache.step_inputs(batch), alpha=0.4)
    assert out.itm_loss is None and out.mlm_loss is None
    for term in ("loss", "itc_loss", "imc_loss", "knowledge_loss"):
        torch.testing.assert_close(out[term], expected[term], atol=1e-5, rtol=0, msg=term)
    assert expected.knowledge_loss is not None and expected.imc_loss is not None

    text_before = {n: p.detach().clone() for n, p in model.wvlp.text_model.named_parameters()}
    moving_before = {
        n: p.detach().clone() for n, p in model.wvlp.named_parameters() if not n.startswith("text_model.")
    }
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    out.loss.backward()
    optimizer.step()
    model.momentum_update(skip=("text_model.",))
    for name, param in model.wvlp.text_model.named_parameters():
        assert torch.equal(param, text_before[name]), name
    for name, param in model.teacher.text_model.named_parameters():  # the teacher's stays the frozen student's
        assert torch.equal(param, text_before[name]), name
    moved = [
        n for n, p in model.wvlp.named_parameters() if n in moving_before and not torch.equal(p, moving_before[n])
    ]
    assert "text_proj.weight" in moved and any(n.startswith("vision_model.") for n in moved)


def test_cache_is_reused_and_rebuilt_when_the_tower_or_the_corpus_changes(tiny, tmp_path):
    model, processor, pool = tiny
    first = cache_of(model, processor, pool, tmp_path)
    again = cache_of(model, processor, pool, tmp_path)
    assert first.built and not again.built and again.path == first.path
    assert torch.equal(again.descriptions, first.descriptions) and torch.equal(again.knowledge, first.knowledge)
    assert first.descriptions.shape == (len(TEXTS), model.config.text_config.hidden_size)
    assert first.knowledge.shape[0] == len(pool.knowledge_sentences) == 4

    with torch.no_grad():
        model.wvlp.text_model.embeddings.word_embeddings.weight[7, 0] += 1e-3
    tower_changed = cache_of(model, processor, pool, tmp_path)
    assert tower_changed.built and tower_changed.path != first.path
    with torch.no_grad():
        model.wvlp.text_model.embeddings.word_embeddings.weight[7, 0] -= 1e-3

    descriptions_changed = cache_of(
        model, processor, DescriptionPool([*TEXTS[:-1], "a tote"], pool.labels, KNOWLEDGE), tmp_path
    )
    knowledge_changed = cache_of(
        model, processor, DescriptionPool(TEXTS, pool.labels, [*KNOWLEDGE[:-1], ["a handbag"]]), tmp_path
    )
    assert descriptions_changed.built and knowledge_changed.built
    assert len({first.path, tower_changed.path, descriptions_changed.path, knowledge_changed.path}) == 4
    # Rows of unchanged sentences are the same numbers whichever cache they come from.
    torch.testing.assert_close(descriptions_changed.descriptions[:-1], first.descriptions[:-1], atol=1e-6, rtol=0)
    assert not cache_of(model, processor, pool, tmp_path).built  # the original is still there


def test_a_full_step_needs_tokens_and_a_locked_step_refuses_them(tiny, tmp_path):
    model, processor, pool = tiny
    batch = batch_of(processor, pool)
    locked = cache_of(model, processor, pool, tmp_path).step_inputs(batch)
    with pytest.raises(ValueError, match="exactly one of input_ids"):
        model(**locked, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    with pytest.raises(ValueError, match="exactly one of input_ids"):
        model(pixel_values=batch["pixel_values"], category_ids=batch["category_ids"])

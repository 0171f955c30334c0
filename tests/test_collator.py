"""The distillation collator: a pure function of (rows, seed, epoch) with BERT masking and soft targets."""

import numpy as np
import pytest
import torch
from PIL import Image

from wvlp.modeling import build_default_processor
from wvlp.train.collator import DescriptionPool, DistillationCollator


@pytest.fixture(scope="module")
def processor():
    return build_default_processor(image_size=32)


def make_pool(num_classes: int = 3, per_class: int = 4, dim: int = 8) -> DescriptionPool:
    rng = np.random.default_rng(0)
    texts, labels, knowledge = [], [], []
    for c in range(num_classes):
        for i in range(per_class):
            texts.append(f"class {c} description {i}: a garment with long sleeves and a round collar made of wool")
            labels.append(c)
            knowledge.append([f"knowledge {c}.{i}.{j} about clothing" for j in range(i % 3)])
    return DescriptionPool(texts, np.array(labels), knowledge, rng.normal(size=(len(texts), dim)))


def make_rows(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {
            "image": Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)),
            "label": i % 3,
            "image_id": f"img-{seed}-{i}",
        }
        for i in range(n)
    ]


def collator_for(processor, **kwargs) -> DistillationCollator:
    return DistillationCollator(
        processor,
        make_pool(),
        seed=7,
        max_length=24,
        knowledge_max_length=12,
        augmented_view=True,
        teacher_temperature=0.1,
        **kwargs,
    )


def test_same_seed_same_batch_and_rows_independent_of_batch(processor):
    rows = make_rows(6)
    a, b = collator_for(processor)(rows), collator_for(processor)(rows)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # A row's draws do not depend on its batch-mates: what distributed runs and resumption rely on.
    half = collator_for(processor)(rows[3:])
    for key in ("pixel_values", "input_ids", "mlm_input_ids", "mlm_labels", "knowledge_input_ids"):
        assert torch.equal(half[key], a[key][3:]), key


def test_epoch_and_seed_change_the_draws(processor):
    rows = make_rows(12)
    first = collator_for(processor)(rows)
    later = collator_for(processor)
    later.epoch = 1
    second = later(rows)
    assert not torch.equal(first["input_ids"], second["input_ids"])
    assert not torch.equal(first["pixel_values"], second["pixel_values"])


def test_descriptions_come_from_the_rows_category(processor):
    collator = collator_for(processor)
    batch = collator(make_rows(9))
    texts = processor.tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True)
    for text, label in zip(texts, batch["category_ids"].tolist()):
        assert text.startswith(f"class {label} description")


def test_masking_statistics_and_special_tokens(processor):
    collator = collator_for(processor)
    rows = make_rows(400, seed=1)
    batch = collator(rows)
    ids, masked, labels = batch["input_ids"], batch["mlm_input_ids"], batch["mlm_labels"]
    special = torch.isin(ids, torch.tensor(processor.tokenizer.all_special_ids)) | (batch["attention_mask"] == 0)
    chosen = labels != -100
    assert not (chosen & special).any(), "a special or padding token was selected for MLM"
    assert torch.equal(masked[special], ids[special])
    assert torch.equal(labels[chosen], ids[chosen])
    rate = chosen.sum().item() / (~special).sum().item()
    assert 0.13 < rate < 0.17, rate
    mask_share = (masked[chosen] == processor.tokenizer.mask_token_id).float().mean().item()
    kept_share = (masked[chosen] == ids[chosen]).float().mean().item()
    assert 0.75 < mask_share < 0.85 and 0.06 < kept_share < 0.15, (mask_share, kept_share)


def test_knowledge_padding_and_soft_targets(processor):
    collator = collator_for(processor)
    rows = make_rows(6)
    batch = collator(rows)
    assert batch["knowledge_input_ids"].shape == (6, 2, 12)
    pool = collator.pool
    # The collator's first draw of each row's stream picks its description.
    drawn = [int(collator.row_rng(row["image_id"]).choice(pool.rows_of[row["label"]])) for row in rows]
    expected_ids = processor.tokenizer(
        [pool.texts[d] for d in drawn], padding="max_length", max_length=24, truncation=True, return_tensors="pt"
    )["input_ids"]
    assert torch.equal(batch["input_ids"], expected_ids)
    # Reference soft targets: softmax of cosine similarities / temperature, in numpy.
    e = pool.teacher_embeddings[drawn]
    logits = e @ e.T / 0.1
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    torch.testing.assert_close(batch["teacher_targets"], torch.from_numpy(expected).float(), atol=1e-5, rtol=0)
    torch.testing.assert_close(batch["teacher_targets"].sum(1), torch.ones(6))
    valid = batch["knowledge_valid"]
    for row_valid, d in zip(valid.tolist(), drawn):
        assert sum(row_valid) == min(2, len(pool.knowledge[d]))


def test_empty_pool_names_the_category(processor):
    pool = make_pool()
    with pytest.raises(ValueError, match="categories 5 \\(Sandal\\)"):
        pool.check_covers({0, 5}, {5: "Sandal"})
    collator = DistillationCollator(processor, pool)
    with pytest.raises(ValueError, match="category 4"):
        collator([{"image": Image.new("L", (28, 28)), "label": 4, "image_id": "x"}])


def test_lm_tokens_are_the_paired_descriptions_with_eos_right_padded(processor):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for t in make_pool().texts for w in t.split()})  # a word-level "LM" tokenizer with an eos
    backend = Tokenizer(models.WordLevel({**{w: i for i, w in enumerate(words)}, "<eos>": 999}, unk_token="<eos>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    lm_tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>")
    batch = collator_for(processor, lm_tokenizer=lm_tokenizer, lm_max_length=8)(make_rows(6))
    texts = processor.tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True)
    ids, mask = batch["lm_input_ids"], batch["lm_attention_mask"]
    assert ids.shape == mask.shape == (6, 8)  # every description is longer than 7 words: truncated, then eos
    assert (ids[:, -1] == 999).all() and mask.all()
    for row, text in zip(ids, texts):  # the LM sees the same description as the text tower
        lm_words = lm_tokenizer.decode(row[:-1]).split()
        assert len(lm_words) == 7 and "".join(text.split()).startswith("".join(lm_words))
    assert "lm_input_ids" not in collator_for(processor)(make_rows(2))

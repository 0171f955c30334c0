"""P-Former: frozen LM stays frozen, losses are named and fall, save/load, run.py dispatch, real-SmolLM2 check."""

from pathlib import Path

import pytest
import torch
from transformers import AutoModel

from wvlp.modeling import PFormerModel
from wvlp.modeling.modeling_bridge import load_language_model

from tests.helpers import tiny_lm, tiny_pformer

ROOT = Path(__file__).resolve().parent.parent


def sentence_batch(batch: int = 6, length: int = 10, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 120, (batch, length), generator=g)
    input_ids[:, 0], input_ids[:, -1] = 101 % 120, 102 % 120
    lm_mask = torch.ones(batch, length - 2, dtype=torch.long)
    lm_mask[0, -3:] = 0
    return dict(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        lm_input_ids=torch.randint(3, 120, (batch, length - 2), generator=g),
        lm_attention_mask=lm_mask,
    )


def test_named_terms_and_weighted_total():
    model = tiny_pformer(vocab_loss_weight=0.5).attach_language_model(tiny_lm())
    out = model(**sentence_batch())
    assert out.prompts.shape == (6, 4, 32) and out.text_embeds.shape == (6, 16)
    expected = out.lm_loss + out.contrastive_loss + 0.5 * out.vocab_loss
    torch.testing.assert_close(out.loss, expected)
    model.config.contrastive_loss_weight = 0.0
    assert model(**sentence_batch()).contrastive_loss is None  # a weight-0 term is skipped
    with pytest.raises(ValueError, match="mask_probability"):
        tiny_pformer(mask_probability=1.5)


def test_vocab_loss_is_distance_to_nearest_token_embedding():
    lm = tiny_lm()
    model = tiny_pformer().attach_language_model(lm)
    vocab = lm.get_input_embeddings().weight
    prompts = vocab[[3, 7]][None] + 0.01  # each prompt lies next to one vocabulary vector
    torch.testing.assert_close(model.vocab_loss(prompts, lm), torch.tensor(1e-4), rtol=1e-3, atol=1e-6)


def test_frozen_lm_stays_frozen_and_gradients_reach_prompts():
    lm = tiny_lm()
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    model = tiny_pformer().attach_language_model(lm).train()
    assert not lm.training and not any(p.requires_grad for p in lm.parameters())
    names = set(model.state_dict())
    assert not any("language_model" in n or n.startswith("model.layers") for n in names)
    assert {id(p) for p in model.parameters()}.isdisjoint({id(p) for p in lm.parameters()})
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(3):
        out = model(**sentence_batch(seed=step))
        out.prompts.retain_grad()
        optimizer.zero_grad()
        out.loss.backward()
        assert out.prompts.grad is not None and out.prompts.grad.abs().sum() > 0
        assert model.lm_proj.weight.grad.abs().sum() > 0
        optimizer.step()
    assert all(p.grad is None for p in lm.parameters())
    for key, value in lm.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not lm.training


def test_lm_loss_falls_on_a_fixed_batch():
    # A random LM with larger weights reacts to its input; sentences with structure the prompts can steer toward.
    lm = tiny_lm(initializer_range=0.2)
    model = tiny_pformer(contrastive_loss_weight=0.0, vocab_loss_weight=0.0).attach_language_model(lm)
    batch = sentence_batch()
    batch["lm_input_ids"] = (torch.arange(8)[None] * 3 + torch.arange(6)[:, None] * 7) % 110 + 5
    model.eval()
    with torch.no_grad():
        start = float(model(**batch).lm_loss)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(15):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        end = float(model(**batch).lm_loss)
    assert end < start - 0.5, (start, end)


def test_save_load_round_trip_keeps_the_lm_out(tmp_path):
    lm = tiny_lm()
    model = tiny_pformer(language_model_id="org/tiny-lm").attach_language_model(lm).eval()
    lm.save_pretrained(tmp_path / "lm")
    model.save_pretrained(tmp_path / "pformer")
    assert (tmp_path / "pformer" / "modeling_pformer.py").is_file()
    loaded = AutoModel.from_pretrained(tmp_path / "pformer").eval()
    assert isinstance(loaded, PFormerModel) and set(loaded.state_dict()) == set(model.state_dict())
    batch = sentence_batch()
    torch.testing.assert_close(loaded.get_prompts(batch["input_ids"]), model.get_prompts(batch["input_ids"]))
    # No LM attached: it is loaded, frozen, by config.language_model_id on first use; an id that cannot be loaded
    # (offline here) is a loud error that names the fix.
    with pytest.raises(OSError, match="attach_language_model"):
        loaded(**batch)
    loaded.attach_language_model(load_language_model(str(tmp_path / "lm")))
    torch.testing.assert_close(loaded(**batch).lm_loss, model(**batch).lm_loss)
    assert not any(p.requires_grad for p in loaded.get_language_model().parameters())


def test_run_py_trains_the_tiny_pformer(tmp_path):
    from wvlp.data.template_corpus import write_template_corpus
    from wvlp.train.run import main

    corpus = write_template_corpus(tmp_path / "corpus", images_per_split=4)
    out = tmp_path / "run"
    metrics = main(
        [
            "--config",
            str(ROOT / "train" / "configs" / "pformer-tiny.yaml"),
            "--set",
            f"data.path={corpus}",
            "--set",
            f"training.output_dir={out}",
        ]
    )
    assert metrics["train"]["train_loss"] > 0 and metrics["train_sentences"] > 50
    assert metrics["heldout_perplexity_after"] > 1
    loaded = PFormerModel.from_pretrained(out / "model")
    # The random tiny LM is kept next to the model, but no machine path enters the saved config.
    assert loaded.config.language_model_id is None and (out / "language_model" / "config.json").is_file()
    assert str(tmp_path) not in (out / "model" / "config.json").read_text()
    logged = [entry for entry in (out / "trainer_state.json").read_text().split("lm_loss")]
    assert len(logged) > 1  # the named terms are logged


@pytest.mark.slow
def test_smollm2_pformer_beats_random_prompts():
    from transformers import AutoTokenizer

    from wvlp.modeling.pretrained_assets import minilm_path
    from wvlp.train.config import ModelArgs
    from wvlp.train.pformer_run import PFormerCollator, build_pformer, load_frozen_language_model

    text_tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    lm, lm_tokenizer, path = load_frozen_language_model("smollm2", text_tokenizer)
    # Few steps through the real 30-layer LM: no input noise, one sentence, reference-like lr with clipping.
    config = {"num_prompts": 4, "mask_probability": 0.0, "contrastive_loss_weight": 0.0}
    model = build_pformer(ModelArgs(init="default", config=config), lm.config.hidden_size, path)
    model.attach_language_model(lm)
    collator = PFormerCollator(text_tokenizer, lm_tokenizer, max_length=16, lm_max_length=12)
    batch = collator(["a sneaker with white laces"])
    from wvlp.modeling.modeling_bridge import prompt_lm_loss

    with torch.no_grad():
        std = lm.get_input_embeddings().weight.std()
        random_prompts = torch.randn(3, 4, lm.config.hidden_size, generator=torch.Generator().manual_seed(0)) * std
        repeat = {k: v.expand(3, -1) for k, v in batch.items()}
        random_loss = float(prompt_lm_loss(lm, random_prompts, repeat["lm_input_ids"], repeat["lm_attention_mask"]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    model.train()
    for _ in range(12):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    model.eval()
    with torch.no_grad():
        trained_loss = float(model(**batch).lm_loss)
    assert trained_loss < random_loss - 0.3, (trained_loss, random_loss)  # 7.01 vs 7.63 after 8 steps
    assert not any(p.requires_grad for p in lm.parameters())

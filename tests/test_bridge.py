"""Image-to-prompt bridge: off by default, alignment = MSE to the frozen P-Former, frozen LM, save/load, generation."""

import json
import os

import pytest
import torch

from wvlp.modeling import WVLPConfig, WVLPForPreTraining, WVLPModel
from wvlp.modeling.modeling_bridge import load_language_model, load_lm_tokenizer

from tests.helpers import tiny_batch, tiny_config_kwargs, tiny_lm, tiny_pformer

torch.set_flush_denormal(True)
BRIDGE = dict(prompt_bridge=True, bridge_num_prompts=4, bridge_num_layers=1, bridge_prompt_dim=32)


class IdTokenizer:
    """The few tokenizer methods generation needs, over the tiny LM's 120 ids (no special tokens to strip)."""

    pad_token_id, eos_token_id = 0, None

    def batch_decode(self, rows, skip_special_tokens: bool = True) -> list[str]:
        return [" ".join(f"t{int(i)}" for i in row if int(i) != 0) for row in rows]


def bridge_config(**overrides) -> WVLPConfig:
    return WVLPConfig(**tiny_config_kwargs(**{**BRIDGE, **overrides}))


def config_text(folder) -> str:
    return (folder / "config.json").read_text()


def absolute_paths(value) -> list[str]:
    """Every string in a (JSON) config that is an absolute path."""
    if isinstance(value, dict):
        return [p for v in value.values() for p in absolute_paths(v)]
    if isinstance(value, list):
        return [p for v in value for p in absolute_paths(v)]
    return [value] if isinstance(value, str) and os.path.isabs(value) else []


def lm_batch(batch: dict) -> dict:
    return dict(lm_input_ids=batch["input_ids"][:, 1:] % 120, lm_attention_mask=batch["attention_mask"][:, 1:])


def test_bridge_is_off_by_default_and_validated(tiny_config):
    assert WVLPModel(tiny_config).prompt_bridge is None
    assert not any("prompt_bridge" in k for k in WVLPModel(tiny_config).state_dict())
    out = WVLPForPreTraining(tiny_config)(**tiny_batch())
    assert out.generation_loss is None and out.pformer_alignment_loss is None
    with pytest.raises(ValueError, match="prompt_bridge=True"):
        WVLPConfig(**tiny_config_kwargs(generation_loss_weight=1.0))
    with pytest.raises(ValueError, match="bridge_num_prompts"):
        bridge_config(bridge_num_prompts=0)


def test_alignment_term_is_the_mse_to_the_pformer_prompts():
    torch.manual_seed(0)
    model = WVLPForPreTraining(bridge_config(pformer_alignment_loss_weight=10.0, itm_loss_weight=0.0))
    pformer = tiny_pformer()
    model.attach_pformer(pformer).train()
    assert not pformer.training and "pformer" not in " ".join(model.state_dict())
    batch = tiny_batch()
    out = model(**batch)
    model.eval()
    with torch.no_grad():
        image_prompts = model.wvlp.get_image_prompts(batch["pixel_values"])
        reference = pformer.get_prompts(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(out.pformer_alignment_loss, torch.nn.functional.mse_loss(image_prompts, reference))
    expected = sum(
        model.config.pretraining_config.loss_weight(k) * getattr(out, f"{k}_loss")
        for k in ("itc", "mlm", "imc", "knowledge", "pformer_alignment")
        if getattr(out, f"{k}_loss") is not None
    )
    torch.testing.assert_close(out.loss, expected)
    with pytest.raises(ValueError, match="share the text tokenizer"):
        model.attach_pformer(tiny_pformer(text_config={**tiny_config_kwargs()["text_config"], "vocab_size": 99}))


def test_generation_loss_trains_the_bridge_not_the_lm():
    torch.manual_seed(0)
    lm = tiny_lm()
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    model = WVLPForPreTraining(bridge_config(generation_loss_weight=1.0)).attach_language_model(lm)
    assert {id(p) for p in model.parameters()}.isdisjoint({id(p) for p in lm.parameters()})
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    batch = tiny_batch()
    for _ in range(2):
        out = model(**batch, **lm_batch(batch))
        optimizer.zero_grad()
        out.loss.backward()
        assert model.wvlp.prompt_bridge.lm_proj.weight.grad.abs().sum() > 0
        optimizer.step()
    assert out.generation_loss > 0 and all(p.grad is None for p in lm.parameters())
    assert all(torch.equal(v, before[k]) for k, v in lm.state_dict().items()) and not lm.training


def test_save_load_and_deterministic_generate_description(tmp_path):
    torch.manual_seed(0)
    lm = tiny_lm()
    lm.save_pretrained(tmp_path / "lm")
    model = WVLPModel(bridge_config(language_model_id="org/tiny-lm")).eval()
    with torch.no_grad():  # cross-attention starts at zero: give it weight so the images matter
        for layer in model.prompt_bridge.layers:
            layer.cross_attn.o_proj.weight.normal_(std=0.5)
    model.save_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / "modeling_bridge.py").is_file()  # shipped for trust_remote_code
    loaded = WVLPModel.from_pretrained(tmp_path / "model").eval()
    pixel_values = tiny_batch()["pixel_values"][:3]
    torch.testing.assert_close(loaded.get_image_prompts(pixel_values), model.get_image_prompts(pixel_values))
    texts = model.generate_description(pixel_values, language_model=lm, tokenizer=IdTokenizer(), max_new_tokens=6)
    assert len(texts) == 3 and all(texts)
    # The config records the LM's stable name, never a machine path; without an attached LM, an id that cannot be
    # loaded is a loud error naming the fix.
    assert loaded.config.language_model_id == "org/tiny-lm" and str(tmp_path) not in config_text(tmp_path / "model")
    with pytest.raises(OSError, match="attach_language_model"):
        loaded.generate_description(pixel_values, tokenizer=IdTokenizer(), max_new_tokens=6)
    # The LM attached at run time (here: the local copy); greedy decoding is deterministic.
    loaded.attach_language_model(load_language_model(str(tmp_path / "lm")), IdTokenizer())
    assert loaded.generate_description(pixel_values, max_new_tokens=6) == texts
    with pytest.raises(ValueError, match="exactly one"):
        model.generate_description(tokenizer=IdTokenizer())
    with pytest.raises(ValueError, match="no image-to-prompt bridge"):
        WVLPModel(WVLPConfig(**tiny_config_kwargs())).get_image_prompts(pixel_values)


def test_generative_evaluation_and_study_hook():
    from wvlp.evaluation.generative import describe_then_classify, description_perplexity, generated_examples

    from studies.pformer_study import run_alignment_study

    torch.manual_seed(0)
    lm = tiny_lm()
    model = WVLPModel(bridge_config()).eval()
    batch = tiny_batch()
    ppl = description_perplexity(model, lm, batch["pixel_values"], **lm_batch(batch), batch_size=4)
    assert 1 < ppl < 1000

    class TextTokenizer:
        def __call__(self, texts, **kwargs):
            ids = torch.tensor([[1] + [5 + len(t) % 100, 7] for t in texts])
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    result = describe_then_classify(
        model,
        lm,
        IdTokenizer(),
        TextTokenizer(),
        batch["pixel_values"],
        [0, 1, 2, 0, 1, 2],
        ["a", "bb", "ccc"],
        max_new_tokens=3,
    )
    assert 0 <= result["accuracy"] <= 1 and result["n"] == 6
    examples = generated_examples(
        model, lm, IdTokenizer(), batch["pixel_values"][:2], [0, 1], ["a", "bb"], max_new_tokens=3
    )
    assert [e["label"] for e in examples] == ["a", "bb"] and all("text" in e for e in examples)

    report = run_alignment_study(
        language_model="tiny", seeds=(0,), steps=2, pformer_steps=2, batch_size=4, num_eval=4, image_size=32, tiny=True
    )
    assert set(report["arms"]) == {"alignment_w10", "without_alignment"}
    for arm in report["arms"].values():
        assert arm["heldout_perplexity"]["n"] == 1 and arm["heldout_perplexity"]["mean"] > 1
        assert 0 <= arm["describe_then_classify"]["mean"] <= 1 and len(arm["examples"]) == 4


def test_generation_weight_without_lm_tokens_is_a_clear_error():
    model = WVLPForPreTraining(bridge_config(generation_loss_weight=1.0)).attach_language_model(tiny_lm())
    with pytest.raises(ValueError, match="lm_input_ids"):
        model(**tiny_batch())


def test_run_py_trains_the_bridge_against_a_pformer_from_run_py(tmp_path):
    """Stage 1 (text-only P-Former) then stage 2 (bridge: generation + alignment) through the one entry point."""
    from pathlib import Path

    from wvlp.data.template_corpus import write_template_corpus
    from wvlp.train.run import main

    root = Path(__file__).resolve().parent.parent
    corpus = write_template_corpus(tmp_path / "corpus", images_per_split=4)
    main(
        [
            "--config",
            str(root / "train" / "configs" / "pformer-tiny.yaml"),
            "--set",
            f"data.path={corpus}",
            "--set",
            f"training.output_dir={tmp_path / 'pformer'}",
        ]
    )
    lm_folder = tmp_path / "pformer" / "language_model"  # the tiny LM stage 1 saved, with its tokenizer
    sets = [
        f"data.path={corpus}",
        f"training.output_dir={tmp_path / 'vl'}",
        "training.max_steps=4",
        "training.logging_steps=1",
        "training.save_steps=4",
        "model.config.prompt_bridge=true",
        "model.config.bridge_num_prompts=4",
        "model.config.bridge_num_layers=1",
        "model.config.bridge_prompt_dim=32",
        f"model.config.language_model_id={lm_folder}",
        "model.config.generation_loss_weight=1.0",
        "model.config.pformer_alignment_loss_weight=1.0",
        f"model.pformer_path={tmp_path / 'pformer' / 'model'}",
    ]
    main(["--config", str(root / "train" / "configs" / "tiny.yaml"), *[a for s in sets for a in ("--set", s)]])
    logged = json.loads((tmp_path / "vl" / "trainer_state.json").read_text())["log_history"]
    for term in ("generation_loss", "pformer_alignment_loss"):
        values = [entry[term] for entry in logged if term in entry]
        assert len(values) == 4 and all(v > 0 for v in values), (term, logged)
    # The saved configs hold no machine path: a local LM folder is loaded at run time, never recorded.
    for folder in (tmp_path / "vl" / "model", tmp_path / "pformer" / "model"):
        assert not absolute_paths(json.loads(config_text(folder))), config_text(folder)
    model = WVLPModel.from_pretrained(tmp_path / "vl" / "model").eval()
    assert model.config.language_model_id is None and model.prompt_bridge is not None
    assert "pretraining_config" not in json.loads(config_text(tmp_path / "vl" / "model"))  # architecture only
    model.attach_language_model(load_language_model(str(lm_folder)), load_lm_tokenizer(str(lm_folder)))
    pixel_values = tiny_batch(image_size=32)["pixel_values"][:2]
    texts = model.generate_description(pixel_values, max_new_tokens=4)
    assert len(texts) == 2 and texts == model.generate_description(pixel_values, max_new_tokens=4)

    bad = sets[:-1] + ["model.pformer_path=" + str(tmp_path / "missing")]
    with pytest.raises(FileNotFoundError, match="model.pformer_path"):
        main(["--config", str(root / "train" / "configs" / "tiny.yaml"), *[a for s in bad for a in ("--set", s)]])
    wrong_width = sets[:8] + ["model.config.bridge_prompt_dim=48"] + sets[9:]
    with pytest.raises(ValueError, match="bridge_prompt_dim=48"):
        main(
            [
                "--config",
                str(root / "train" / "configs" / "tiny.yaml"),
                *[a for s in wrong_width for a in ("--set", s)],
            ]
        )


def test_alignment_study_arms_do_not_depend_on_which_ran_before():
    from studies.pformer_study import run_alignment_study

    common = dict(
        language_model="tiny", seeds=(0,), steps=2, pformer_steps=1, batch_size=4, num_eval=4, image_size=32, tiny=True
    )
    alone = run_alignment_study(alignment_weights=(10.0,), **common)["arms"]["alignment_w10"]
    after_another = run_alignment_study(alignment_weights=(1.0, 10.0), **common)["arms"]["alignment_w10"]
    assert alone["heldout_perplexity"]["values"] == after_another["heldout_perplexity"]["values"]

"""Configs, outputs, the two saved artifacts, and loading through the Auto classes with and without remote code."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModel, AutoModelForPreTraining

from wvlp.modeling import WVLPConfig, WVLPForPreTraining, WVLPModel

from tests.helpers import VIT, tiny_batch, tiny_config_kwargs


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(fusion_layer=2), "fusion_layer"),
        (dict(fusion_layer=-1), "fusion_layer"),
        (dict(embed_dim=0), "embed_dim"),
        (dict(vision_config=dict(model_type="bert")), "vision_config.model_type"),
        (dict(vision_config=dict(model_type="no_such_tower")), "vision_config.model_type"),
        (dict(vision_config=dict(variant="lite9")), "vision_config.variant"),
        (dict(temperature=0.9), "temperature"),
        (dict(momentum=1.0), "momentum"),
        (dict(itm_loss_weight=-1.0), "itm_loss_weight"),
    ],
)
def test_invalid_config_names_the_field(overrides, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        WVLPConfig(**tiny_config_kwargs(**overrides))


def model_outputs(model: WVLPModel, batch: dict) -> dict:
    with torch.no_grad():
        out = model(
            pixel_values=batch["pixel_values"], input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        )
        itm = model.itm_score(batch["input_ids"], batch["attention_mask"], pixel_values=batch["pixel_values"])
    return {"logits": out.logits_per_image, "image": out.image_embeds, "text": out.text_embeds, "itm": itm}


def test_forward_shapes_and_normalised_embeddings(tiny_config):
    model = WVLPModel(tiny_config).eval()
    batch = tiny_batch()
    out = model(
        pixel_values=batch["pixel_values"],
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        category_ids=batch["category_ids"],
        return_loss=True,
    )
    assert out.logits_per_image.shape == (6, 6) and torch.equal(out.logits_per_text, out.logits_per_image.t())
    torch.testing.assert_close(out.image_embeds.norm(dim=-1), torch.ones(6))
    torch.testing.assert_close(out.text_embeds.norm(dim=-1), torch.ones(6))
    assert out.loss.ndim == 0 and out.loss > 0
    assert model.temperature().item() == pytest.approx(0.07)
    image = model.get_image_features(batch["pixel_values"])
    assert image.pooler_output.shape == (6, 16) and image.last_hidden_state.shape == (6, 1, 1280)


def test_fusion_mode_equals_text_mode_at_initialisation(tiny_config):
    model = WVLPModel(tiny_config).eval()
    batch = tiny_batch()
    text = model.text_model.encode(batch["input_ids"], batch["attention_mask"])
    image_tokens = model.vision_model(batch["pixel_values"]).last_hidden_state
    fused = model.text_model.fuse(text.fusion_input, batch["attention_mask"], image_tokens)
    torch.testing.assert_close(fused, text.last_hidden_state)


def test_mlm_head_is_tied_to_word_embeddings(tiny_config):
    model = WVLPForPreTraining(tiny_config)
    for m in (model.wvlp, model.teacher):
        assert m.mlm_head.decoder.weight is m.text_model.embeddings.word_embeddings.weight


def test_vit_vision_tower_from_config():
    model = WVLPModel(WVLPConfig(**tiny_config_kwargs(vision_config=VIT))).eval()
    out = model.get_image_features(torch.randn(2, 3, 32, 32))
    assert out.last_hidden_state.shape == (2, 17, 32) and out.pooler_output.shape == (2, 16)


def test_published_model_round_trip_has_strict_keys(tiny_config, tmp_path):
    model = WVLPModel(tiny_config).eval()
    batch = tiny_batch()
    model.save_pretrained(tmp_path)
    assert not list(tmp_path.glob("*.bin")) and (tmp_path / "model.safetensors").is_file()
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        keys = list(f.keys())
    assert not [k for k in keys if k.startswith("teacher.") or "queue" in k]
    reloaded, info = WVLPModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    for name, value in model_outputs(model, batch).items():
        torch.testing.assert_close(model_outputs(reloaded.eval(), batch)[name], value, atol=0, rtol=0, msg=name)
    assert isinstance(AutoModel.from_pretrained(tmp_path), WVLPModel)


def test_pretraining_state_round_trip(tiny_config, tmp_path):
    model = WVLPForPreTraining(tiny_config)
    model.train()
    model(**tiny_batch(seed=1))  # fills part of the queue
    with torch.no_grad():
        model.wvlp.text_proj.weight.add_(0.1)
        model.momentum_update()
    model.save_pretrained(tmp_path)
    reloaded, info = AutoModelForPreTraining.from_pretrained(tmp_path, output_loading_info=True)
    assert isinstance(reloaded, WVLPForPreTraining)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    for name, tensor in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], tensor), name
    batch = tiny_batch(seed=2)
    model.eval(), reloaded.eval()
    torch.manual_seed(0)
    a = model(**batch)
    torch.manual_seed(0)
    b = reloaded(**batch)
    assert {"loss", "itc_loss", "itm_loss", "mlm_loss", "knowledge_loss"} <= set(a.keys())
    for name in a.keys():
        assert torch.equal(a[name], b[name]), name


def test_published_model_is_the_student(tiny_config, tmp_path):
    pretraining = WVLPForPreTraining(tiny_config).eval()
    with torch.no_grad():
        pretraining.wvlp.vision_proj.weight.mul_(2)
    pretraining.save_published(tmp_path)
    published = WVLPModel.from_pretrained(tmp_path).eval()
    batch = tiny_batch()
    for name, value in model_outputs(pretraining.wvlp, batch).items():
        torch.testing.assert_close(model_outputs(published, batch)[name], value, atol=0, rtol=0, msg=name)


REMOTE_CHECK = textwrap.dedent(
    """
    import json, sys, torch
    from transformers import AutoConfig, AutoModel, AutoModelForPreTraining
    folder, batch_file, out_file = sys.argv[1:]
    batch = torch.load(batch_file)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    with torch.no_grad():
        out = model(pixel_values=batch["pixel_values"], input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        itm = model.itm_score(batch["input_ids"], batch["attention_mask"], pixel_values=batch["pixel_values"])
    assert not any(m == "modeling_wvlp" or m.startswith("modeling_wvlp.") for m in sys.modules), "project imported"
    torch.save({"logits": out.logits_per_image, "itm": itm, "class": type(model).__module__}, out_file)
    """
)


@pytest.mark.slow  # a fresh interpreter
def test_remote_code_reload_in_a_fresh_process(tiny_config, tmp_path):
    model = WVLPModel(tiny_config).eval()
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_wvlp.WVLPModel"
    for name in (
        "configuration_wvlp.py",
        "modeling_wvlp.py",
        "modeling_text.py",
        "losses.py",
        "modeling_efficientnet_lite.py",
    ):
        assert (folder / name).is_file(), name
    batch = tiny_batch()
    torch.save(batch, tmp_path / "batch.pt")
    script = tmp_path / "check.py"
    script.write_text(REMOTE_CHECK)
    proc = subprocess.run(
        [sys.executable, str(script), str(folder), str(tmp_path / "batch.pt"), str(tmp_path / "o.pt")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[:3000]
    remote = torch.load(tmp_path / "o.pt")
    assert remote["class"].startswith("transformers_modules.")
    expected = model_outputs(model, batch)
    torch.testing.assert_close(remote["logits"], expected["logits"], atol=0, rtol=0)
    torch.testing.assert_close(remote["itm"], expected["itm"], atol=0, rtol=0)


def test_pretraining_output_has_one_field_per_loss_term():
    from dataclasses import fields

    from wvlp.modeling import LOSS_TERMS, WVLPPreTrainingConfig, WVLPPreTrainingOutput

    loss_fields = [f.name for f in fields(WVLPPreTrainingOutput) if f.name.endswith("_loss")]
    assert sorted(loss_fields) == sorted(f"{term}_loss" for term in LOSS_TERMS)
    weights = [f.name for f in fields(WVLPPreTrainingConfig) if f.name.endswith("_loss_weight")]
    assert sorted(weights) == sorted(f"{term}_loss_weight" for term in LOSS_TERMS)


@pytest.mark.parametrize("load", ["from_pretrained", "from_config"])
def test_text_tower_follows_the_requested_attention_implementation(tiny_config, tmp_path, load):
    torch.manual_seed(0)
    WVLPModel(tiny_config).save_pretrained(tmp_path)
    outputs = {}
    for implementation in ("eager", "sdpa"):
        if load == "from_pretrained":
            model = WVLPModel.from_pretrained(tmp_path, attn_implementation=implementation)
        else:
            config = WVLPConfig.from_pretrained(tmp_path)
            model = AutoModel.from_config(config, attn_implementation=implementation)
            model.load_state_dict(WVLPModel.from_pretrained(tmp_path).state_dict())
        assert model.config.text_config._attn_implementation == implementation
        attention = model.text_model.layers[0].self_attn
        assert attention.config is model.config.text_config  # the block reads its own tower's config
        outputs[implementation] = model_outputs(model.eval(), tiny_batch())
    for name, value in outputs["eager"].items():
        torch.testing.assert_close(outputs["sdpa"][name], value, atol=1e-5, rtol=0, msg=name)
    default = WVLPModel(tiny_config)
    assert default.config.text_config._attn_implementation == default.config._attn_implementation
    default.set_attn_implementation("eager")
    assert default.config.text_config._attn_implementation == "eager"


def test_published_config_is_architecture_only(tiny_config, tmp_path):
    pretraining = WVLPForPreTraining(tiny_config)
    assert pretraining.config.pretraining_config.queue_size == 16
    pretraining.save_pretrained(tmp_path / "state")
    pretraining.save_published(tmp_path / "model")
    published = json.loads((tmp_path / "model" / "config.json").read_text())
    assert "pretraining_config" not in published
    assert not {"momentum", "alpha", "queue_size", "itc_loss_weight", "language_model_path"} & set(published)
    state = json.loads((tmp_path / "state" / "config.json").read_text())
    assert state["pretraining_config"]["queue_size"] == 16 and "queue_size" not in state
    # A published model grows the default pre-training settings again when training resumes from it.
    assert WVLPForPreTraining.from_published(WVLPModel.from_pretrained(tmp_path / "model")).config.pretraining_config


def test_older_flat_configs_fold_into_the_pretraining_config(tmp_path):
    flat = json.loads(WVLPConfig(**tiny_config_kwargs()).to_json_string())
    pretraining = flat.pop("pretraining_config")
    for name in ("model_type", "transformers_version"):
        pretraining.pop(name, None)
    flat |= {**pretraining, "queue_size": 4, "language_model_path": str(tmp_path)}  # as the old code saved them
    (tmp_path / "config.json").write_text(json.dumps(flat))
    config = WVLPConfig.from_pretrained(tmp_path, alpha=0)
    assert config.pretraining_config.queue_size == 4 and config.pretraining_config.alpha == 0
    assert config.language_model_id is None  # a machine path is dropped, with a warning
    assert WVLPConfig(language_model_path="org/lm").language_model_id == "org/lm"
    with pytest.raises(ValueError, match="machine path"):
        WVLPConfig(**tiny_config_kwargs(language_model_id=str(tmp_path)))


def test_modeling_files_import_no_circle_and_ship_no_local_module():
    import ast
    from pathlib import Path

    import wvlp.modeling

    folder = Path(wvlp.modeling.__file__).parent

    def relative_imports(name: str) -> set[str]:
        tree = ast.parse((folder / f"{name}.py").read_text())
        return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1}

    assert not {"modeling_wvlp", "modeling_bridge", "modeling_pformer"} & relative_imports("modeling_text")
    assert "modeling_wvlp" not in relative_imports("modeling_bridge")
    shipped = ["modeling_wvlp", "modeling_text", "modeling_bridge", "modeling_pformer", "losses", "configuration_wvlp"]
    for name in shipped:
        assert not {"loading", "pretrained_assets"} & relative_imports(name), name

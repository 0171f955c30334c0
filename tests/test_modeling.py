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

from tests.helpers import tiny_batch, tiny_config_kwargs

VIT = dict(
    model_type="vit",
    hidden_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=64,
    image_size=32,
    patch_size=8,
)


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

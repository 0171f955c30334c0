"""Checkpoints saved by an earlier version of the code (tests/fixtures/saved_checkpoints, written by
tests/fixtures/make_saved_checkpoints.py) load with today's code and give exactly the outputs recorded then."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from modeling_wvlp import WVLPForPreTraining, WVLPModel

FOLDER = Path(__file__).resolve().parent / "fixtures" / "saved_checkpoints"
VIT = dict(model_type="vit", hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
           image_size=32, patch_size=8)


@torch.no_grad()
def model_outputs(model: WVLPModel, batch: dict) -> dict[str, torch.Tensor]:
    """What inference with a published model computes: embeddings, similarity logits and ITM scores."""
    out = model(input_ids=batch["input_ids"], pixel_values=batch["pixel_values"],
                attention_mask=batch["attention_mask"])
    itm = model.itm_score(batch["input_ids"], batch["attention_mask"], pixel_values=batch["pixel_values"])
    return {"image_embeds": out.image_embeds, "text_embeds": out.text_embeds,
            "logits_per_image": out.logits_per_image, "itm_score": itm}


@torch.no_grad()
def pretraining_outputs(model: WVLPForPreTraining, batch: dict) -> dict[str, torch.Tensor]:
    """Every loss term of one pre-training forward (hard negatives drawn under a fixed seed) and the saved state."""
    torch.manual_seed(0)
    out = model(**batch)
    terms = {k: v for k, v in out.items() if k.endswith("loss") and v is not None}
    state = {f"buffer.{name}": b for name, b in model.named_buffers() if "queue" in name or "ptr" in name}
    return {**terms, **state}


@pytest.mark.skipif(not (FOLDER / "reference.safetensors").is_file(), reason="fixture not written")
def test_saved_checkpoints_give_identical_outputs():
    reference = load_file(str(FOLDER / "reference.safetensors"))
    batch = {k.removeprefix("input."): v for k, v in reference.items() if k.startswith("input.")}
    got = {f"model.{k}": v for k, v in model_outputs(WVLPModel.from_pretrained(FOLDER / "model").eval(), batch).items()}
    pretraining = WVLPForPreTraining.from_pretrained(FOLDER / "pretraining").eval()
    got |= {f"pretraining.{k}": v for k, v in pretraining_outputs(pretraining, batch).items()}
    expected = {k: v for k, v in reference.items() if not k.startswith("input.")}
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert torch.equal(got[name], value), f"{name}: max abs diff {(got[name].float() - value.float()).abs().max()}"

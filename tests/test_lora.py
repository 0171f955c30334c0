"""PEFT LoRA: only adapters and the fully-trained heads change; adapters save, load and merge."""

import torch
from peft import PeftModel

from wvlp.modeling import WVLPConfig, WVLPForPreTraining
from wvlp.train.config import LoraArgs
from wvlp.train.lora import FULLY_TRAINED, apply_lora, merged_state_dict, merged_student

from tests.helpers import tiny_batch, tiny_config_kwargs


def outputs(model, batch):
    with torch.no_grad():
        out = model(
            pixel_values=batch["pixel_values"], input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        )
    return out.logits_per_image


def test_lora_trains_only_adapters_and_named_modules_then_merges(tmp_path):
    torch.manual_seed(0)
    config = WVLPConfig(**tiny_config_kwargs(queue_size=0))
    base = WVLPForPreTraining(config)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    model = apply_lora(base, LoraArgs(enabled=True, r=4, towers=["text", "fusion", "vision"]))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("lora_A" in n and "text_model" in n for n in trainable)
    assert any("lora_A" in n and "vision_model" in n for n in trainable)
    assert not [n for n in trainable if "teacher" in n]
    assert any(".temp.modules_to_save" in n for n in trainable), "the temperature must stay trainable"

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = tiny_batch()
    for _ in range(3):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
        # A low momentum makes every student change visible in the teacher; it follows the merged weights.
        base.momentum_update(merged_state_dict(model), momentum=0.5)

    published = merged_student(model).eval()
    # Parameters only: BatchNorm running statistics are buffers and move in training mode regardless.
    changed = {k for k, v in published.named_parameters() if not torch.equal(v, before[f"wvlp.{k}"])}
    allowed = tuple(FULLY_TRAINED) + ("text_model.layers", "vision_model.backbone")
    assert changed and all(k.startswith(allowed) for k in changed), changed
    assert not [k for k in changed if k.startswith("text_model.embeddings") or "layer_norm" in k or ".norm." in k]
    # The EMA teacher follows the merged student weights.
    # (m * x + (1 - m) * x is x only up to rounding, hence the tolerance.)
    teacher_moved = {
        k
        for k, v in base.teacher.named_parameters()
        if not torch.allclose(v, before[f"teacher.{k}"], atol=1e-6, rtol=0)
    }
    assert teacher_moved <= changed and {"vision_proj.weight", "text_proj.weight"} <= teacher_moved
    assert any(k.startswith("text_model.layers.0.self_attn") for k in teacher_moved)

    model.save_pretrained(tmp_path / "adapter")
    torch.manual_seed(0)
    fresh = PeftModel.from_pretrained(WVLPForPreTraining(config), tmp_path / "adapter")
    merged = fresh.merge_and_unload().wvlp.eval()
    eval_batch = tiny_batch(seed=5)
    torch.testing.assert_close(outputs(merged, eval_batch), outputs(published, eval_batch), atol=1e-5, rtol=0)

"""PEFT LoRA on the student's towers; projections, heads and the temperature stay fully trainable."""

import torch
from peft import LoraConfig, get_peft_model

from wvlp.modeling import WVLPForPreTraining, WVLPModel
from wvlp.train.config import LoraArgs
from wvlp.train.trainer import unwrap_pretraining_model

# Module-name patterns (PEFT regexes over the full names) of each tower; the teacher is never adapted.
TOWER_PATTERNS = {
    "text": r"wvlp\.text_model\.layers\.{text_layers}\.self_attn\.(q_proj|k_proj|v_proj|o_proj)",
    "fusion": r"wvlp\.text_model\.layers\.{fusion_layers}\.(self_attn|cross_attn)\.(q_proj|k_proj|v_proj|o_proj)",
    "vision": r"wvlp\.vision_model\.backbone\.(blocks\.\d+\.(expand|project)\.conv|head\.conv)",
}
# Whole modules trained as usual: `temp` is a module on purpose (PEFT silently freezes a bare parameter here).
FULLY_TRAINED = ["vision_proj", "text_proj", "temp", "itm_head"]


def lora_target_pattern(model: WVLPForPreTraining, towers: list[str]) -> str:
    """One regex matching the adapted modules of the chosen towers."""
    unknown = sorted(set(towers) - set(TOWER_PATTERNS))
    if unknown or not towers:
        raise ValueError(f"lora.towers={towers}: choose from {sorted(TOWER_PATTERNS)}")
    split = model.config.fusion_layer
    layers = model.config.text_config.num_hidden_layers
    text_layers = "(" + "|".join(str(i) for i in range(split)) + ")" if split else "(?!)"
    fusion_layers = "(" + "|".join(str(i) for i in range(split, layers)) + ")"
    patterns = [TOWER_PATTERNS[t].format(text_layers=text_layers, fusion_layers=fusion_layers) for t in towers]
    return "^(" + "|".join(patterns) + ")$"


def apply_lora(model: WVLPForPreTraining, args: LoraArgs) -> torch.nn.Module:
    """Injects LoRA adapters into the student; everything else but `FULLY_TRAINED` is frozen.

    BatchNorm running statistics are frozen too (momentum 0): an adapter holds no buffers, so only then does
    base + adapter reproduce the trained model.
    """
    for module in model.wvlp.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.0
    config = LoraConfig(
        r=args.r,
        lora_alpha=args.alpha,
        lora_dropout=args.dropout,
        target_modules=lora_target_pattern(model, args.towers),
        modules_to_save=[f"wvlp.{name}" for name in FULLY_TRAINED],
    )
    return get_peft_model(model, config)


@torch.no_grad()
def merged_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The student's effective weights under plain `WVLPModel` names, also when PEFT adapters are injected.

    `model` is the student itself or anything wrapping the `WVLPForPreTraining` (PEFT, DDP). A LoRA layer contributes
    base weight + its active adapters' delta; a `modules_to_save` copy stands for its module. So the teacher and the
    published model follow what the student actually computes.
    """
    student = model if isinstance(model, WVLPModel) else unwrap_pretraining_model(model).wvlp
    state = {}
    for name, module in student.named_modules():
        if hasattr(module, "base_layer") and hasattr(module, "get_delta_weight"):
            delta = sum(module.get_delta_weight(a) for a in module.active_adapters if a in module.lora_A.keys())
            state[f"{name}.weight"] = module.base_layer.weight + delta
            if getattr(module.base_layer, "bias", None) is not None:
                state[f"{name}.bias"] = module.base_layer.bias
    for name, tensor in student.state_dict(keep_vars=True).items():
        if "lora_" in name or ".original_module." in name or ".base_layer." in name:
            continue
        state.setdefault(name.replace(".modules_to_save.default.", "."), tensor)
    return state


def merged_student(model: torch.nn.Module) -> WVLPModel:
    """The student as a standalone `WVLPModel`, LoRA deltas merged in, whatever wraps it."""
    return unwrap_pretraining_model(model).published_model(merged_state_dict(model))

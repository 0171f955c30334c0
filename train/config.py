"""Run configuration: one YAML file (model, data, run, lora, training sections) plus `--set key=value` overrides."""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from transformers import TrainingArguments


@dataclass
class ModelArgs:
    """Which model to train: `default` (packaged towers), `tiny` (random, tests), `pretrained` (a folder), `paper`."""

    kind: str = "wvlp"  # "wvlp" (vision-language pre-training) or "pformer" (text-only P-Former, train/pformer_run.py)
    init: str = "default"
    path: str | None = None  # init=pretrained: a saved WVLPModel or WVLPForPreTraining folder
    image_size: int = 96
    vision_checkpoint: str | None = None  # init=paper: a transformers vision model folder (ViT/DeiT-B/16)
    text_checkpoint: str | None = None  # init=paper: a BERT folder (weights + tokenizer)
    pformer_path: str | None = None  # a trained P-Former folder: the frozen target of pformer_alignment_loss
    config: dict[str, Any] = field(default_factory=dict)  # WVLPConfig fields (loss weights, queue, ...)


@dataclass
class DataArgs:
    """The corpus written by `wvlp describe` and how the collator turns it into batches."""

    path: str = ""
    train_split: str = "train"
    eval_split: str = "test"
    max_length: int = 32
    knowledge_max_length: int = 32
    lm_max_length: int = 48  # descriptions in the frozen LM's tokens (generation_loss of the prompt bridge)
    num_knowledge: int = 2
    mlm_probability: float = 0.15
    augment: dict[str, Any] = field(default_factory=dict)
    teacher_temperature: float | None = None  # frozen-teacher soft targets; needs model.config.frozen_teacher_weight
    holdout_classes: list[int | str] = field(default_factory=list)  # unseen-class protocol: never trained on
    prompt_ids: list[str] = field(default_factory=list)  # train on these prompt templates' descriptions only (all: [])
    max_train_samples: int | None = None
    max_eval_samples: int | None = 1000


@dataclass
class RunArgs:
    """Trainer extras: alpha warm-up and periodic zero-shot evaluation."""

    alpha_warmup_steps: int = 0
    zero_shot_every: int = 0
    zero_shot_templates: list[str] = field(default_factory=lambda: ["a photo of a {}."])


@dataclass
class LoraArgs:
    """PEFT LoRA on chosen towers; projections and temperature stay fully trainable."""

    enabled: bool = False
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    towers: list[str] = field(default_factory=lambda: ["text", "fusion"])  # text, fusion, vision


@dataclass
class PFormerArgs:
    """Text-only P-Former pre-training (model.kind: pformer): the frozen LM and the sentence sources."""

    language_model: str = "smollm2"  # "smollm2" (the packaged GGUF), "tiny" (random, tests) or a transformers folder
    sources: list[str] = field(default_factory=lambda: ["descriptions", "knowledge"])  # corpus columns to read
    lm_max_length: int = 48
    max_eval_sentences: int = 64  # held-out descriptions (test split) for the perplexity in metrics.json


@dataclass
class RunConfig:
    """Everything `train/run.py` needs."""

    model: ModelArgs
    data: DataArgs
    run: RunArgs
    lora: LoraArgs
    training: TrainingArguments
    source: str = ""
    pformer: PFormerArgs = field(default_factory=PFormerArgs)


SECTIONS = {"model": ModelArgs, "data": DataArgs, "run": RunArgs, "lora": LoraArgs, "pformer": PFormerArgs}


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ValueError(f"--set {item!r}: expected key=value, e.g. --set training.max_steps=10")
    key, value = item.split("=", 1)
    return key.strip().split("."), yaml.safe_load(value)


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Applies `section.key=value` overrides (values parsed as YAML) to the raw config dict."""
    for item in overrides:
        path, value = _parse_override(item)
        node = raw
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {item!r}: {part} is not a section")
        node[path[-1]] = value
    return raw


def _build_section(name: str, cls: type, values: dict) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown key(s) in section '{name}': {', '.join(f'{name}.{k}' for k in unknown)}")
    return cls(**values)


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Reads the YAML file, applies overrides and validates every key (an unknown key is an error naming it)."""
    raw = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} not found")
        raw = yaml.safe_load(path.read_text()) or {}
    raw = apply_overrides(raw, overrides or [])
    unknown = sorted(set(raw) - set(SECTIONS) - {"training"})
    if unknown:
        raise ValueError(f"unknown section(s) {unknown}; expected {sorted(SECTIONS) + ['training']}")
    sections = {name: _build_section(name, cls, raw.get(name) or {}) for name, cls in SECTIONS.items()}
    training = dict(raw.get("training") or {})
    training.setdefault("output_dir", "out/run")
    # The collator needs image/label/image_id, which the Trainer would drop as "unused" by the model's forward.
    training.setdefault("remove_unused_columns", False)
    training.setdefault("report_to", "none")
    known = {f.name for f in dataclasses.fields(TrainingArguments)}
    unknown = sorted(set(training) - known)
    if unknown:
        raise ValueError(f"unknown key(s) in section 'training': {', '.join('training.' + k for k in unknown)}")
    return RunConfig(training=TrainingArguments(**training), source=str(path or ""), **sections)

"""Run configuration: one YAML file (model, data, run, lora, training sections) plus `--set key=value` overrides.

Every value is checked against its field's annotated type and allowed range when the file is read, so a typo fails
in a second with a message naming `section.field` and the value, not after the corpus, the model and an evaluation.
"""

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from transformers import TrainingArguments

from wvlp.common.config_check import Rule, above, at_least, check_section, each, field_hints, fraction, one_of


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
    # Token lengths of the descriptions and the knowledge sentences; 0: from the corpus, the 95th percentile of its
    # token lengths rounded up to a multiple of 8 (`wvlp.train.run.corpus_max_length`).
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
    # Hold the last N training images out as the validation set that the in-training zero-shot curve reads instead
    # of eval_split (choosing a schedule on the curve then never looks at the test split); 0: read eval_split.
    validation_size: int = 0
    max_eval_samples: int | None = 1000


@dataclass
class RunArgs:
    """Trainer extras: alpha warm-up, the locked-text phase and periodic zero-shot evaluation."""

    alpha_warmup_steps: int = 0
    # The first N optimiser steps are locked-text steps (text tower frozen, its pooled text cached; image tower,
    # projections and temperature train on ITC/IMC/knowledge), the rest full steps; max_steps for all locked.
    locked_text_steps: int = 0
    locked_text_projection: bool = False  # the locked-text steps also freeze the text projection: the whole text side
    max_train_seconds: float = 0.0  # stop once training wall-clock (evaluations excluded) passes this; 0: off
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


def zero_shot_template(value: str) -> str | None:
    """A prompt template with one `{}` that the class name fills."""
    try:
        filled = value.format("class name")
    except (IndexError, KeyError, ValueError):
        filled = value
    return None if filled != value else "must be a template with one {} where the class name goes"


def seed_range(value: int) -> str | None:
    """A seed numpy accepts."""
    return None if 0 <= value < 2**32 else "must be in [0, 2**32)"


# Ranges of the numeric fields where one is meaningful (None values of Optional fields are not checked).
RULES: dict[str, Rule] = {
    "model.kind": one_of("wvlp", "pformer"),
    "model.init": one_of("default", "tiny", "pretrained", "paper"),
    "model.image_size": at_least(1),
    "data.max_length": lambda value: None if value == 0 or value >= 2 else "must be >= 2 ([CLS] and [SEP]), or 0",
    "data.knowledge_max_length": lambda value: None if value == 0 or value >= 2 else "must be >= 2, or 0",
    "data.lm_max_length": at_least(2),
    "data.num_knowledge": at_least(0),
    "data.mlm_probability": fraction,
    "data.teacher_temperature": above(0),
    "data.max_train_samples": at_least(1),
    "data.validation_size": at_least(0),
    "data.max_eval_samples": at_least(1),
    "data.augment.color_jitter": at_least(0),
    "run.alpha_warmup_steps": at_least(0),
    "run.locked_text_steps": at_least(0),
    "run.max_train_seconds": at_least(0),
    "run.zero_shot_every": at_least(0),
    "run.zero_shot_templates": each(zero_shot_template),
    "lora.r": at_least(1),
    "lora.alpha": at_least(1),
    "lora.dropout": fraction,
    "lora.towers": each(one_of("text", "fusion", "vision")),
    "pformer.sources": each(one_of("descriptions", "knowledge")),
    "pformer.lm_max_length": at_least(2),
    "pformer.max_eval_sentences": at_least(1),
    "training.output_dir": lambda value: None if value.strip() else "must not be empty",
    "training.learning_rate": above(0),
    "training.per_device_train_batch_size": at_least(1),
    "training.per_device_eval_batch_size": at_least(1),
    "training.gradient_accumulation_steps": at_least(1),
    "training.max_steps": lambda value: (
        None if value == -1 or value >= 1 else "must be >= 1 (or -1: num_train_epochs)"
    ),
    "training.num_train_epochs": above(0),
    "training.warmup_steps": at_least(0),  # below 1: a fraction of the training steps
    "training.weight_decay": at_least(0),
    "training.max_grad_norm": at_least(0),
    "training.adam_beta1": fraction,
    "training.adam_beta2": fraction,
    "training.adam_epsilon": above(0),
    "training.logging_steps": above(0),  # below 1: a fraction of the training steps
    "training.save_steps": above(0),
    "training.eval_steps": above(0),
    "training.save_total_limit": at_least(1),
    "training.seed": seed_range,
    "training.data_seed": seed_range,
    "training.dataloader_num_workers": at_least(0),
}


def _plain_scalar(annotation: Any) -> bool:
    """int, float or bool, possibly Optional: the TrainingArguments fields whose type can be checked generically."""
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)] or [annotation]
    return len(args) == 1 and args[0] in (bool, int, float)


def _build_section(name: str, cls: type, values: Any) -> Any:
    """The dataclass section `name` from its checked values (and `data.augment` checked against AugmentConfig)."""
    checked = check_section(name, values, {f.name for f in dataclasses.fields(cls)}, field_hints(cls), RULES)
    if name == "data" and "augment" in checked:
        from wvlp.train.collator import AugmentConfig  # lazily: the collator imports the model package

        fields = {f.name for f in dataclasses.fields(AugmentConfig)}
        checked["augment"] = check_section(
            "data.augment", checked["augment"], fields, field_hints(AugmentConfig), RULES
        )
    return cls(**checked)


def _build_training(values: Any) -> TrainingArguments:
    """TrainingArguments with its int/float/bool fields and output_dir checked first, plus this project's defaults."""
    hints = {k: v for k, v in field_hints(TrainingArguments).items() if _plain_scalar(v) or k == "output_dir"}
    training = check_section("training", values, {f.name for f in dataclasses.fields(TrainingArguments)}, hints, RULES)
    training.setdefault("output_dir", "out/run")
    # The collator needs image/label/image_id, which the Trainer would drop as "unused" by the model's forward.
    training.setdefault("remove_unused_columns", False)
    training.setdefault("report_to", "none")
    return TrainingArguments(**training)


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
            if node.get(part) is None:  # absent, or an empty YAML section (`data:`)
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise ValueError(f"--set {item!r}: {part} is not a section")
        node[path[-1]] = value
    return raw


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Reads the YAML file, applies overrides and validates every key, type and range (ValueError naming the field)."""
    raw = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} not found")
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise ValueError(f"config file {path} is not valid YAML: {err}") from None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            expected = ", ".join([*SECTIONS, "training"])
            raise ValueError(
                f"config file {path}: expected a mapping of sections ({expected}), not a {type(raw).__name__}"
            )
    raw = apply_overrides(raw, overrides or [])
    unknown = sorted(str(name) for name in set(raw) - set(SECTIONS) - {"training"})
    if unknown:
        raise ValueError(f"unknown section(s) {unknown}; expected {sorted(SECTIONS) + ['training']}")
    sections = {name: _build_section(name, cls, raw.get(name)) for name, cls in SECTIONS.items()}
    if sections["model"].kind == "pformer" and sections["model"].init == "paper":
        raise ValueError("model.init='paper': a P-Former run (model.kind: pformer) takes default, tiny or pretrained")
    return RunConfig(training=_build_training(raw.get("training")), source=str(path or ""), **sections)

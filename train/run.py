"""Pre-train WVLP on a corpus written by `wvlp describe`.

    python train/run.py --config train/configs/tiny.yaml --set data.path=out/corpus
    accelerate launch train/run.py --config train/configs/fashion-mnist.yaml
    accelerate launch --config_file train/configs/accelerate_ddp.yaml train/run.py --config train/configs/paper.yaml
    torchrun --nproc_per_node 2 train/run.py --config train/configs/tiny.yaml

The run folder gets checkpoints (student + EMA teacher + queues, resumable with `--resume`), the published model
with its processor in `model/`, `metrics.json` and one loss-curve PNG per loss term in `plots/`.
"""

import argparse
import hashlib
import json
from pathlib import Path

import datasets
import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer, set_seed

from wvlp.data.holdout import names_by_index, resolve_holdout
from wvlp.evaluation.zero_shot import zero_shot_accuracy
from wvlp.modeling import (
    WVLPConfig,
    WVLPForPreTraining,
    WVLPImageProcessor,
    WVLPModel,
    WVLPProcessor,
    build_default_model,
    build_default_processor,
)
from wvlp.modeling.convert_minilm import load_bert_folder, text_config_from_bert
from wvlp.modeling.loading import load_wvlp
from wvlp.train.callbacks import CollatorEpochCallback, MomentumUpdateCallback, ZeroShotCallback
from wvlp.train.collator import AugmentConfig, DescriptionPool, DistillationCollator
from wvlp.train.config import DataArgs, ModelArgs, RunConfig, load_config
from wvlp.train.lora import apply_lora, merged_student
from wvlp.train.options import add_arguments
from wvlp.train.presets import TINY_TEXT, is_machine_path, language_model_folder, stable_language_model_id
from wvlp.train.run_folder import open_run_folder, write_run_folder
from wvlp.train.text_cache import LockedText
from wvlp.train.trainer import WVLPTrainer

IMAGE_COLUMNS = {"image", "label", "image_id"}


def language_model_name(values: dict) -> str | None:
    """`model.config.language_model_id` as the run config gives it (`language_model_path`, its older name, too)."""
    return values.get("language_model_id", values.get("language_model_path"))


def build_model_and_processor(args: ModelArgs) -> tuple[WVLPForPreTraining, WVLPProcessor]:
    """The model to pre-train and its processor, as chosen by `model.init`.

    `model.config` holds `WVLPConfig` fields; its pre-training settings may be given flat (`queue_size: 0`), as in
    older configs, and are folded into `pretraining_config`.
    """
    overrides = dict(args.config)
    if "language_model_id" in overrides or "language_model_path" in overrides:
        name = language_model_name(overrides)
        overrides.pop("language_model_path", None)
        overrides["language_model_id"] = stable_language_model_id(name)
    if args.init == "default":
        return (
            build_default_model(args.image_size, for_pretraining=True, **overrides),
            build_default_processor(args.image_size),
        )
    if args.init == "tiny":
        processor = build_default_processor(args.image_size)
        text = {**TINY_TEXT, "vocab_size": len(processor.tokenizer), **overrides.pop("text_config", {})}
        vision = overrides.pop("vision_config", dict(variant="lite0", image_size=args.image_size))
        config = WVLPConfig(
            vision_config=vision, text_config=text, **{"fusion_layer": 1, "embed_dim": 32, **overrides}
        )
        return WVLPForPreTraining(config), processor
    if args.init == "pretrained":
        model = load_wvlp(args.path, for_pretraining=True, setting="model.path", **overrides)
        return model, WVLPProcessor.from_pretrained(args.path)
    if args.init == "paper":
        for name in ("vision_checkpoint", "text_checkpoint"):
            if not getattr(args, name) or not Path(getattr(args, name)).is_dir():
                raise FileNotFoundError(
                    f"model.{name}={getattr(args, name)!r}: init=paper needs a local checkpoint folder"
                )
        vision = AutoModel.from_pretrained(args.vision_checkpoint)
        bert_config = json.loads((Path(args.text_checkpoint) / "config.json").read_text())
        config = WVLPConfig(
            vision_config=vision.config, text_config=text_config_from_bert(bert_config, pooling="cls"), **overrides
        )
        model = WVLPForPreTraining(config)
        model.wvlp.vision_model.backbone.load_state_dict(vision.state_dict(), strict=False)
        model.wvlp.text_model.load_state_dict(load_bert_folder(args.text_checkpoint), strict=False)
        model.copy_student_to_teacher()
        image_size = getattr(vision.config, "image_size", args.image_size)
        processor = WVLPProcessor(
            WVLPImageProcessor(size=image_size), AutoTokenizer.from_pretrained(args.text_checkpoint)
        )
        return model, processor
    raise ValueError(f"model.init={args.init!r}: expected default, tiny, pretrained or paper")


def attach_frozen_modules(model: WVLPForPreTraining, args: ModelArgs) -> object | None:
    """The frozen LM (and P-Former) that the image-to-prompt bridge's losses read; returns the LM's tokenizer.

    The LM is `model.config.language_model_id` of the run config (`smollm2` = the packaged SmolLM2-135M-Instruct, a Hub
    id, or a local transformers folder), else the one the loaded model's config names. It is resolved here and
    attached by reference; the saved config records only its stable name (see `stable_language_model_id`).
    """
    from wvlp.modeling.modeling_bridge import load_language_model, load_lm_tokenizer

    config = model.config
    if not config.prompt_bridge:
        return None
    name = language_model_name(args.config) or config.language_model_id
    local = name is not None and is_machine_path(name)
    if not name or (local and not Path(name, "config.json").is_file()):
        raise FileNotFoundError(
            f"model.config.language_model_id={name!r}: prompt_bridge needs the frozen LM: 'smollm2' for the "
            "packaged one, its Hub id, or a local transformers folder"
        )
    folder = language_model_folder(name)
    language_model = load_language_model(folder)
    width = language_model.get_input_embeddings().weight.shape[1]
    if width != config.bridge_prompt_dim:
        raise ValueError(
            f"model.config.bridge_prompt_dim={config.bridge_prompt_dim} but the LM at "
            f"{folder} has {width}-d input embeddings: they must be equal"
        )
    tokenizer = load_lm_tokenizer(folder)
    model.attach_language_model(language_model, tokenizer)
    if config.pretraining_config.pformer_alignment_loss_weight > 0:
        if not args.pformer_path or not Path(args.pformer_path).is_dir():
            raise FileNotFoundError(
                f"model.pformer_path={args.pformer_path!r}: pformer_alignment_loss_weight > 0 needs "
                "a trained P-Former folder (train one with model.kind: pformer)"
            )
        from wvlp.modeling import PFormerModel

        model.attach_pformer(PFormerModel.from_pretrained(args.pformer_path))
    return tokenizer


def load_corpus(args: DataArgs) -> tuple[datasets.DatasetDict, datasets.DatasetDict]:
    """The `images` and `descriptions` configs of the corpus folder, with their columns checked."""
    if not args.path or not Path(args.path).is_dir():
        raise FileNotFoundError(f"data.path={args.path!r} is not a corpus folder (write one with `wvlp describe`)")
    images = datasets.load_dataset(args.path, "images")
    descriptions = datasets.load_dataset(args.path, "descriptions")
    for split in (args.train_split, args.eval_split):
        if split not in images:
            raise ValueError(f"{args.path}: the images config has no split {split!r} (it has {list(images)})")
        missing = IMAGE_COLUMNS - set(images[split].column_names)
        if missing:
            raise ValueError(f"{args.path}: images/{split} lacks the columns {sorted(missing)}")
    return images, descriptions


def corpus_max_length(tokenizer, texts: list[str], quantile: float = 0.95, multiple: int = 8) -> int:
    """The `quantile` of the texts' token lengths (special tokens included), rounded up to a multiple of `multiple`."""
    if not texts:
        return multiple
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    return int(-(-np.quantile(lengths, quantile) // multiple) * multiple)


def config_hash(config: RunConfig) -> str:
    """A short hash of the whole run configuration, stored with the metrics."""
    text = json.dumps(
        {
            "model": vars(config.model),
            "data": vars(config.data),
            "run": vars(config.run),
            "lora": vars(config.lora),
            "training": config.training.to_dict(),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def train(config: RunConfig, resume: str | bool | None = None) -> dict:
    """Runs one pre-training job; returns the metrics it also writes to `metrics.json`.

    The run folder is checked first (a folder of someone else's files is refused before anything loads) and the
    checkpoint to resume from is resolved (a broken newest one is skipped with a warning).
    """
    args = config.training
    checkpoint = open_run_folder(args, resume)
    # Tiny activations of a freshly initialised conv tower can turn denormal, which is very slow on CPU.
    torch.set_flush_denormal(True)
    set_seed(args.seed)
    images, descriptions = load_corpus(config.data)
    model, processor = build_model_and_processor(config.model)
    if len(processor.tokenizer) > model.config.text_config.vocab_size:
        raise ValueError(
            f"the tokenizer has {len(processor.tokenizer)} tokens but the text tower's vocabulary only "
            f"{model.config.text_config.vocab_size}: they do not belong together"
        )
    names = images[config.data.train_split].features["label"].names
    held_out = resolve_holdout(names_by_index(names), config.data.holdout_classes, setting="data.holdout_classes")
    train_images = images[config.data.train_split]
    validation = None
    if config.data.validation_size:
        if config.data.validation_size >= len(train_images):
            raise ValueError(
                f"data.validation_size={config.data.validation_size}: the {config.data.train_split} split has only "
                f"{len(train_images)} images, leaving none to train on"
            )
        cut = len(train_images) - config.data.validation_size
        validation, train_images = train_images.select(range(cut, len(train_images))), train_images.select(range(cut))
    if held_out:
        train_images = train_images.filter(lambda label: label not in held_out, input_columns="label")
    if config.data.max_train_samples:
        train_images = train_images.select(range(min(config.data.max_train_samples, len(train_images))))
    pool_rows = descriptions["train"].filter(lambda label: label not in held_out, input_columns="label")
    if config.data.prompt_ids:
        unknown = sorted(set(config.data.prompt_ids) - set(pool_rows.unique("prompt_id")))
        if unknown:
            raise ValueError(f"data.prompt_ids: {unknown} name no prompt of the corpus at {config.data.path}")
        wanted = set(config.data.prompt_ids)
        pool_rows = pool_rows.filter(lambda prompt: prompt in wanted, input_columns="prompt_id")
    pool = DescriptionPool.from_dataset(pool_rows)
    pool.check_covers(set(train_images.unique("label")), dict(enumerate(names)))

    # 0: measured on the corpus (in memory: the run config and its hash keep the 0 the user wrote).
    max_length = config.data.max_length or corpus_max_length(processor.tokenizer, pool.texts)
    knowledge_max_length = config.data.knowledge_max_length or corpus_max_length(
        processor.tokenizer, pool.knowledge_sentences
    )
    pretraining = model.config.pretraining_config
    lm_tokenizer = attach_frozen_modules(model, config.model)
    collator = DistillationCollator(
        processor,
        pool,
        seed=args.seed,
        max_length=max_length,
        knowledge_max_length=knowledge_max_length,
        num_knowledge=config.data.num_knowledge,
        mlm_probability=config.data.mlm_probability,
        augment=AugmentConfig(**config.data.augment),
        augmented_view=pretraining.imc_loss_weight > 0,
        teacher_temperature=config.data.teacher_temperature if pretraining.frozen_teacher_weight > 0 else None,
        lm_tokenizer=lm_tokenizer if pretraining.generation_loss_weight > 0 else None,
        lm_max_length=config.data.lm_max_length,
        text_indices=config.run.locked_text_steps > 0,
    )
    locked_text = None
    if config.run.locked_text_steps > 0:
        if config.lora.enabled and "text" in config.lora.towers:
            raise ValueError("run.locked_text_steps > 0 freezes the text tower: drop 'text' from lora.towers")
        if checkpoint is None:  # the teacher's text side is the frozen student's, which the cache stands for
            model.teacher.text_model.load_state_dict(model.wvlp.text_model.state_dict())
            model.teacher.text_proj.load_state_dict(model.wvlp.text_proj.state_dict())
        locked_text = LockedText.load_or_build(
            model.wvlp,
            processor.tokenizer,
            pool,
            Path(args.output_dir) / "text-cache",
            max_length=max_length,
            knowledge_max_length=knowledge_max_length,
            write=args.should_save,
        )
    if config.lora.enabled:
        model = apply_lora(model, config.lora)

    eval_split = images[config.data.eval_split] if validation is None else validation
    if config.data.max_eval_samples:
        eval_split = eval_split.select(range(min(config.data.max_eval_samples, len(eval_split))))
    eval_images, eval_labels = list(eval_split["image"]), np.asarray(eval_split["label"])
    templates = config.run.zero_shot_templates

    def evaluate(student: WVLPModel) -> dict[str, float]:
        metrics = zero_shot_accuracy(student, processor, eval_images, eval_labels, names, templates)
        if held_out:
            unseen = np.isin(eval_labels, sorted(held_out))
            for subset, mask in (("seen", ~unseen), ("unseen", unseen)):
                if mask.any():
                    sub = zero_shot_accuracy(
                        student,
                        processor,
                        [eval_images[i] for i in np.flatnonzero(mask)],
                        eval_labels[mask],
                        names,
                        templates,
                    )
                    metrics.update({f"{subset}_{k}": v for k, v in sub.items()})
        return {f"zero_shot_{k}": v for k, v in metrics.items()}

    trainer = WVLPTrainer(
        model=model,
        args=args,
        train_dataset=train_images,
        data_collator=collator,
        callbacks=[
            CollatorEpochCallback(collator),
        ],
        alpha_warmup_steps=config.run.alpha_warmup_steps,
        locked_text_steps=config.run.locked_text_steps,
        locked_text=locked_text,
        locked_text_projection=config.run.locked_text_projection,
    )
    phase = trainer.phase if config.run.locked_text_steps > 0 else None
    trainer.add_callback(MomentumUpdateCallback(trainer.locked_modules))
    trainer.add_callback(
        ZeroShotCallback(evaluate, config.run.zero_shot_every, trainer.log, phase, config.run.max_train_seconds)
    )
    before = evaluate(merged_student(model).eval()) if trainer.is_world_process_zero() else {}
    result = trainer.train(resume_from_checkpoint=checkpoint)
    metrics = {"config": config.source, "config_hash": config_hash(config), "train": result.metrics}
    if trainer.is_world_process_zero():
        published = merged_student(trainer.model)
        metrics["zero_shot_before"], metrics["zero_shot_after"] = before, evaluate(published.eval())
        write_run_folder(trainer, published, processor, metrics)
    return metrics


def pretrain(config: RunConfig, resume: str | bool | None = None) -> dict:
    """Runs the pre-training stage `config.model.kind` names: the WVLP model, or the text-only P-Former."""
    if config.model.kind == "pformer":  # text-only P-Former pre-training has its own data and loop
        from wvlp.train.pformer_run import train_pformer

        return train_pformer(config, resume=resume)
    if config.model.kind != "wvlp":
        raise ValueError(f"model.kind={config.model.kind!r}: expected wvlp or pformer")
    return train(config, resume=resume)


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return pretrain(load_config(args.config, args.set), resume=args.resume)


if __name__ == "__main__":
    from wvlp.common.errors import run_command
    from wvlp.train import run  # the installed module: its frames carry the `wvlp.*` name user errors are told by

    run_command("train/run.py", run.main)

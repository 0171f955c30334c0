"""wvlp.train: pre-training only (entry point, trainer, distillation collator, config, callbacks, LoRA, configs/)."""

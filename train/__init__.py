"""train: pre-training entry point, trainer, distillation collator and evaluation."""

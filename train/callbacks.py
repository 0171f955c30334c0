"""Trainer callbacks: EMA teacher update, the collator's epoch, and periodic zero-shot evaluation."""

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from wvlp.train.lora import merged_state_dict
from wvlp.train.trainer import unwrap_pretraining_model


class MomentumUpdateCallback(TrainerCallback):
    """EMA teacher update once per optimiser step (on_step_end fires after the optimiser, so accumulation is respected)."""

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kwargs):
        # The merged weights: with LoRA adapters injected, the teacher follows base + delta, not the frozen base.
        unwrap_pretraining_model(model).momentum_update(merged_state_dict(model))


class CollatorEpochCallback(TrainerCallback):
    """Tells the distillation collator which epoch it is collating, so each epoch draws new descriptions."""

    def __init__(self, collator):
        self.collator = collator

    def on_epoch_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        # state.epoch is fractional and accumulated in floats: 0.9999999 at the end of epoch 0 means epoch 1.
        self.collator.epoch = int((state.epoch or 0.0) + 1e-6)


class ZeroShotCallback(TrainerCallback):
    """Logs zero-shot accuracy on a held-out split every `every` optimiser steps (and at the end)."""

    def __init__(self, evaluate_fn, every: int):
        self.evaluate_fn = evaluate_fn
        self.every = every

    def _run(self, state: TrainerState, model) -> None:
        student = unwrap_pretraining_model(model).wvlp
        was_training = student.training
        metrics = self.evaluate_fn(student.eval())
        student.train(was_training)
        state.log_history.append({"step": state.global_step, **{f"eval_{k}": v for k, v in metrics.items()}})

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every > 0 and state.global_step % self.every == 0 and state.is_world_process_zero:
            self._run(state, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.every > 0 and state.global_step % self.every != 0 and state.is_world_process_zero:
            self._run(state, model)

"""Trainer callbacks: EMA teacher update, the collator's epoch, and periodic zero-shot evaluation."""

import time
from collections.abc import Callable

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from wvlp.train.lora import merged_state_dict
from wvlp.train.trainer import unwrap_pretraining_model


class MomentumUpdateCallback(TrainerCallback):
    """EMA teacher update once per optimiser step (on_step_end fires after the optimiser, so accumulation is respected).

    `locked` (the trainer's `locked_modules`) names, for a 0-based step, the student's modules frozen in it; they are
    left out of the update, so after a locked-text step the teacher's text side stays the frozen student's, which the
    cached text stands for.
    """

    def __init__(self, locked: Callable[[int], tuple[str, ...]] | None = None):
        self.locked = locked

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kwargs):
        skip = self.locked(state.global_step - 1) if self.locked is not None else ()
        # The merged weights: with LoRA adapters injected, the teacher follows base + delta, not the frozen base.
        unwrap_pretraining_model(model).momentum_update(merged_state_dict(model), skip=skip)


class CollatorEpochCallback(TrainerCallback):
    """Tells the distillation collator which epoch it is collating, so each epoch draws new descriptions."""

    def __init__(self, collator):
        self.collator = collator

    def on_epoch_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        # state.epoch is fractional and accumulated in floats: 0.9999999 at the end of epoch 0 means epoch 1.
        self.collator.epoch = int((state.epoch or 0.0) + 1e-6)


class ZeroShotCallback(TrainerCallback):
    """Zero-shot accuracy on the eval subset every `every` optimiser steps (and at the end), logged through `log`.

    `log` is the trainer's `log`, so every reporting integration sees the points, not only `log_history`. Each point
    carries `images_seen` (optimiser steps x the global batch), `train_seconds` (wall-clock of training without the
    evaluations themselves, continued across a resume), the two axes learning curves are compared on, and with a
    phased schedule the `phase` of the step just taken. With `max_train_seconds` training stops at the first step
    end past that clock: schedules are then compared at equal wall-clock.
    """

    def __init__(
        self,
        evaluate_fn: Callable[[torch.nn.Module], dict[str, float]],
        every: int,
        log: Callable[[dict], None],
        phase: Callable[[int], str] | None = None,
        max_train_seconds: float = 0.0,
    ):
        self.evaluate_fn, self.every, self.log, self.phase = evaluate_fn, every, log, phase
        self.max_train_seconds = max_train_seconds
        self._start, self._eval_seconds, self._seconds_before, self._logged_step = 0.0, 0.0, 0.0, -1

    def on_train_begin(self, args, state, control, **kwargs):
        if self.max_train_seconds and args.world_size > 1:
            raise ValueError("run.max_train_seconds: each process has its own clock; use it in one-process runs")
        self._start, self._eval_seconds = time.perf_counter(), 0.0
        # A resumed run continues the clock of the run it resumes.
        self._seconds_before = max(
            (e["train_seconds"] for e in state.log_history if "train_seconds" in e), default=0.0
        )

    def train_seconds(self) -> float:
        """Training wall-clock so far, evaluations excluded."""
        return self._seconds_before + time.perf_counter() - self._start - self._eval_seconds

    def _run(self, args: TrainingArguments, state: TrainerState, model) -> None:
        train_seconds, started = self.train_seconds(), time.perf_counter()
        student = unwrap_pretraining_model(model).wvlp
        was_training = student.training
        metrics = self.evaluate_fn(student.eval())
        student.train(was_training)
        self._eval_seconds += time.perf_counter() - started
        self._logged_step = state.global_step
        global_batch = args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps
        self.log(
            {
                **{f"eval_{k}": v for k, v in metrics.items()},
                "images_seen": state.global_step * global_batch,
                "train_seconds": round(train_seconds, 3),
                # the kind of the step just taken: the curve marks where it changes
                **({"phase": self.phase(state.global_step - 1)} if self.phase else {}),
            }
        )

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.max_train_seconds and self.train_seconds() >= self.max_train_seconds:
            control.should_training_stop = True
        if self.every > 0 and state.global_step % self.every == 0 and state.is_world_process_zero:
            self._run(args, state, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.every > 0 and state.global_step != self._logged_step and state.is_world_process_zero:
            self._run(args, state, model)

"""`WVLPTrainer`: the HF Trainer with named loss terms, alpha warm-up, NaN guard and crash-safe checkpoints."""

import inspect
import os
import shutil
from collections import defaultdict

import torch
import transformers
from safetensors import SafetensorError
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from wvlp.modeling import WVLPForPreTraining
from wvlp.train.run_folder import CheckpointWriteError, checkpoint_write_message, last_good_state
from wvlp.train.text_cache import LockedText, full_step_inputs


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss; the last good checkpoint is left untouched."""


# WVLPTrainer overrides these private Trainer methods to write each checkpoint aside and rename it into place; this
# is their signature in the transformers it was written for. tests/test_trainer_private_api.py fails loudly, and
# training refuses to start, when a transformers release changes them.
PRIVATE_API = {"_save_checkpoint": ("self", "model", "trial"), "_get_output_dir": ("self", "trial")}


def private_api_problem() -> str | None:
    """What changed in the private Trainer API the crash-safe checkpoint writer overrides, or None."""
    for name, parameters in PRIVATE_API.items():
        method = getattr(Trainer, name, None)
        if method is None or tuple(inspect.signature(method).parameters) != parameters:
            found = "missing" if method is None else str(inspect.signature(method))
            return (
                f"transformers {transformers.__version__} changed Trainer.{name} (expected {parameters}, got {found})"
            )
    if "self._get_output_dir(trial" not in inspect.getsource(Trainer._save_checkpoint):
        return f"transformers {transformers.__version__}: Trainer._save_checkpoint no longer asks _get_output_dir"
    return None


class WVLPTrainer(Trainer):
    """Trains `WVLPForPreTraining`; the EMA teacher update is done by `MomentumUpdateCallback` after each optimiser step.

    With `locked_text` (the cache of the frozen text tower) the first `locked_text_steps` optimiser steps are
    locked-text steps: the text tower does not run and gets no gradient (AdamW leaves parameters without one
    untouched, weight decay included), so it stays bit-identical, and so does the text projection with
    `locked_text_projection`; the steps after them are full steps.
    """

    # Every WVLP loss is a per-batch mean, so the Trainer scales it for gradient accumulation itself.
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        *args,
        alpha_warmup_steps: int = 0,
        locked_text_steps: int = 0,
        locked_text: LockedText | None = None,
        locked_text_projection: bool = False,
        **kwargs,
    ):
        if problem := private_api_problem():
            raise RuntimeError(f"{problem}: update train/trainer.py's checkpoint writer, or install transformers<6")
        if locked_text_steps > 0 and locked_text is None:
            raise ValueError("locked_text_steps > 0 needs locked_text: the cache of the frozen text tower")
        super().__init__(*args, **kwargs)
        self.alpha_warmup_steps = alpha_warmup_steps
        self.locked_text_steps, self.locked_text = locked_text_steps, locked_text
        self.locked_text_projection = locked_text_projection
        # Per term: a logging window that spans the phase change holds steps with and without ITM/MLM.
        self._term_sums: dict[str, float] = defaultdict(float)
        self._term_counts: dict[str, int] = defaultdict(int)

    def phase(self, step: int | None = None) -> str:
        """`locked-text` or `full`: the kind of optimiser step `step` (0-based; default: the one being taken)."""
        step = self.state.global_step if step is None else step
        return "locked-text" if step < self.locked_text_steps else "full"

    def locked_modules(self, step: int | None = None) -> tuple[str, ...]:
        """State-dict prefixes of the student's modules frozen at optimiser step `step` (none in the full phase)."""
        if self.phase(step) != "locked-text":
            return ()
        return ("text_model.", "text_proj.") if self.locked_text_projection else ("text_model.",)

    def current_alpha(self) -> float:
        """Momentum-distillation weight: linear warm-up to `pretraining_config.alpha` over `alpha_warmup_steps` steps."""
        alpha = unwrap_pretraining_model(self.model).config.pretraining_config.alpha
        if self.alpha_warmup_steps <= 0:
            return alpha
        return alpha * min(1.0, self.state.global_step / self.alpha_warmup_steps)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Runs the model with the current alpha, records each named term, refuses non-finite losses."""
        locked = self.locked_modules() if model.training else ()
        inputs = self.locked_text.step_inputs(inputs) if locked else full_step_inputs(inputs)
        if self.locked_text_projection:  # no gradient, so AdamW leaves it as it is (it stays in the optimiser)
            unwrap_pretraining_model(model).wvlp.text_proj.requires_grad_("text_proj." not in locked)
        outputs = model(**inputs, alpha=self.current_alpha())
        loss = outputs.loss
        if not torch.isfinite(loss.detach()).all():
            terms = {k: float(v.detach()) for k, v in outputs.items() if k.endswith("_loss")}
            raise NonFiniteLossError(
                f"non-finite loss at step {self.state.global_step}: {terms}; lower the learning rate or check the "
                f"data; {last_good_state(self.args.output_dir)}"
            )
        if model.training:
            for name, value in outputs.items():
                if name.endswith("_loss") and name != "loss":
                    self._term_sums[name] += float(value.detach())
                    self._term_counts[name] += 1
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds the mean of every named loss term since the last log."""
        if self._term_counts and "loss" in logs:
            for name, total in self._term_sums.items():
                logs[name] = round(total / self._term_counts[name], 4)
            logs["alpha"] = round(self.current_alpha(), 4)
            self._term_sums.clear()
            self._term_counts.clear()
        super().log(logs, start_time)

    def _get_output_dir(self, trial) -> str:
        return getattr(self, "_staging_dir", None) or super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        """Writes the checkpoint aside and renames it into place, so a crash or full disk never corrupts the last one."""
        run_dir = super()._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        final = os.path.join(run_dir, name)
        self._staging_dir = os.path.join(run_dir, ".staging")
        try:
            shutil.rmtree(self._staging_dir, ignore_errors=True)
            super()._save_checkpoint(model, trial)
            if self.args.should_save:
                shutil.rmtree(final, ignore_errors=True)
                os.replace(os.path.join(self._staging_dir, name), final)
        # torch.save reports a full disk as a RuntimeError from inline_container.cc, safetensors as SafetensorError.
        except (OSError, RuntimeError, SafetensorError) as err:
            previous = last_good_state(run_dir, skip=name)
            raise CheckpointWriteError(checkpoint_write_message(final, err, previous)) from err
        finally:
            if self.args.should_save:
                shutil.rmtree(self._staging_dir, ignore_errors=True)
            self._staging_dir = None
        if self.args.should_save:
            rotate_checkpoints(output_dir=run_dir, save_total_limit=self.args.save_total_limit, use_mtime=False)


def unwrap_pretraining_model(model: torch.nn.Module) -> WVLPForPreTraining:
    """The `WVLPForPreTraining` inside DDP/FSDP/PEFT wrappers."""
    while not isinstance(model, WVLPForPreTraining):
        if hasattr(model, "module"):
            model = model.module
        elif hasattr(model, "get_base_model"):
            model = model.get_base_model()
        elif hasattr(model, "base_model") and hasattr(model.base_model, "model"):
            model = model.base_model.model
        else:
            raise TypeError(f"no WVLPForPreTraining inside {type(model).__name__}")
    return model

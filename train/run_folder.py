"""A run folder: opening it (refuse a foreign folder, pick the checkpoint `--resume` continues from), its checkpoints'
integrity, what a failed checkpoint write says, and what a finished run leaves in it.

A checkpoint is intact when every weight file it lists reads to the end (safetensors headers and sizes, the torch
zip's CRCs) and its trainer_state.json parses; a run resumes from the newest intact one and names the ones it skips.
"""

import errno
import json
import os
import shutil
import warnings
import zipfile
import zlib
from pathlib import Path

from transformers import TrainingArguments
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, sort_checkpoints

from wvlp.common.safe_io import RUN, atomic_write_text, check_writable, claim_dir
from wvlp.train.plots import plot_loss_curves, plot_zero_shot_curves


class CheckpointWriteError(RuntimeError):
    """Writing a checkpoint failed (typically a full disk); the previous checkpoint is left untouched."""


def checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """The run folder's `checkpoint-<step>` folders, newest (highest step) first (the order the Trainer rotates by)."""
    if not Path(run_dir).is_dir():
        return []
    return [Path(folder) for folder in reversed(sort_checkpoints(str(run_dir)))]


def _safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file is incomplete: its header must parse and declare exactly the bytes that follow it."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        length = int.from_bytes(prefix, "little") if len(prefix) == 8 else None
        if length is None or length > size - 8:
            return f"truncated ({size} bytes, too short for its header)"
        try:
            header = json.loads(f.read(length))
            end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return "truncated or corrupt (its header does not parse)"
    expected = 8 + length + end
    return None if size == expected else f"truncated or corrupt ({size} bytes, its header declares {expected})"


def _torch_zip_problem(path: Path) -> str | None:
    """Why a torch.save zip archive is incomplete: every member must be present with a matching CRC."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as err:
        return f"truncated or corrupt (not a complete zip archive: {err})"
    return None if bad is None else f"corrupt (member {bad} fails its CRC check)"


# torch.save writes zip archives: the optimizer, scheduler, RNG states and training arguments of a checkpoint.
FILE_CHECKS = {
    ".safetensors": _safetensors_problem,
    ".pt": _torch_zip_problem,
    ".pth": _torch_zip_problem,
    ".bin": _torch_zip_problem,
}


def checkpoint_problem(folder: str | os.PathLike) -> str | None:
    """What makes the checkpoint folder unusable for resuming, naming the file; None when it looks intact.

    Cheap structural checks (no tensor is loaded): trainer_state.json parses, every safetensors file is as long as
    its header says, every torch zip archive passes its CRC test.
    """
    folder = Path(folder)
    state = folder / TRAINER_STATE_NAME
    try:
        json.loads(state.read_text())
    except FileNotFoundError:
        return f"{state}: missing"
    except (OSError, ValueError) as err:
        return f"{state}: truncated or corrupt (does not parse: {err})"
    for path in sorted(folder.iterdir()):
        check = FILE_CHECKS.get(path.suffix)
        try:
            problem = check(path) if check else None
        except OSError as err:
            problem = f"unreadable ({err})"
        if problem:
            return f"{path}: {problem}"
    return None


def newest_intact_checkpoint(run_dir: str | os.PathLike, skip: str | None = None) -> tuple[Path | None, list[str]]:
    """The newest checkpoint that passes `checkpoint_problem` (not named `skip`), and the problems of newer ones."""
    problems = []
    for folder in checkpoints(run_dir):
        if folder.name == skip:
            continue
        problem = checkpoint_problem(folder)
        if problem is None:
            return folder, problems
        problems.append(problem)
    return None, problems


def open_run_folder(args: TrainingArguments, resume: str | bool | None) -> str | None:
    """Claims `args.output_dir` as a run folder (one of someone else's files is refused, untouched) and returns the
    checkpoint to resume from; called before anything heavy loads."""
    if args.should_save:  # the process that writes the run folder (the only one, unless save_on_each_node)
        check_writable(args.output_dir, RUN, "training.output_dir")
    checkpoint = resume_checkpoint(args.output_dir, resume)
    if args.should_save:
        claim_dir(args.output_dir, RUN, "training.output_dir")
    return checkpoint


def resume_checkpoint(output_dir: str | os.PathLike, resume: str | bool | None) -> str | None:
    """The checkpoint to resume from: `resume` itself if a folder, else the newest intact one in `output_dir`.

    A broken newest checkpoint (say a truncated file) is skipped with a warning naming it; if none is intact the
    error names the broken files.
    """
    if not resume:
        return None
    if resume is not True:
        folder = Path(resume)
        if not folder.is_dir():
            raise FileNotFoundError(f"--resume {folder}: no such checkpoint folder")
        problem = checkpoint_problem(folder)
        if problem:
            raise ValueError(f"--resume {folder}: cannot resume from it: {problem}")
        return str(folder)
    if not checkpoints(output_dir):
        raise ValueError(f"--resume: {output_dir} holds no {PREFIX_CHECKPOINT_DIR}-<step> folder to resume from")
    chosen, problems = newest_intact_checkpoint(output_dir)
    if chosen is None:
        raise ValueError(f"--resume: no intact checkpoint in {output_dir}: {'; '.join(problems)}")
    for problem in problems:
        warnings.warn(f"skipping a broken checkpoint: {problem}; resuming from {chosen} instead", stacklevel=2)
    return str(chosen)


def last_good_state(run_dir: str | os.PathLike, skip: str | None = None) -> str:
    """Names the newest intact checkpoint of the run (for error messages), or says that none was saved."""
    chosen, _ = newest_intact_checkpoint(run_dir, skip)
    if chosen is None:
        return f"no checkpoint of this run was saved in {run_dir} yet"
    return f"the checkpoint {chosen} is intact and the last good state (`--resume` continues from it)"


def checkpoint_write_message(folder: str, err: BaseException, previous: str) -> str:
    """The error of a failed checkpoint write: which folder, whether the disk is full, what is still intact."""
    full = getattr(err, "errno", None) == errno.ENOSPC or os.strerror(errno.ENOSPC) in str(err)
    try:
        free = f"{shutil.disk_usage(os.path.dirname(folder) or '.').free / 2**20:.0f} MiB free"
    except OSError:
        free = "free space unknown"
    disk = "the disk is full (ENOSPC)" if full else "the disk may be full"
    cause = (str(err).strip().splitlines() or [""])[0][:200]
    return f"writing checkpoint {folder} failed: {disk} ({free}); {previous}. Cause: {type(err).__name__}: {cause}"


def write_run_folder(trainer, model, processor, metrics: dict) -> None:
    """The tail of every run (main process only): the model with its processor or tokenizer in `model/`, the trainer
    state, one loss-curve PNG per loss term in `plots/` (listed in `metrics`) and `metrics.json`."""
    out = Path(trainer.args.output_dir)
    model.save_pretrained(out / "model")
    processor.save_pretrained(out / "model")
    trainer.save_state()
    history = trainer.state.log_history
    curve = plot_zero_shot_curves(history, out / "plots")
    metrics["plots"] = [str(p) for p in plot_loss_curves(history, out / "plots") + ([curve] if curve else [])]
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))

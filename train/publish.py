"""`wvlp publish`: stage, validate and upload the three repositories of a release (model, dataset, Space).

    wvlp publish --model out/run --dataset out/corpus --space spaces_demo --org my-org --eval out/eval.json [--dry-run]

1. Stage: `<staging>/model` (weights, config, remote code, processor, rendered card), `<staging>/dataset` (parquet
   shards + card), `<staging>/space` (app, requirements, Space README whose YAML points at the two other repos).
2. Validate: the model folder loads with `AutoModel/AutoProcessor.from_pretrained(..., trust_remote_code=True)` in a
   fresh interpreter that never imports this project; every dataset config loads with `load_dataset`; each card's
   YAML parses. `--dry-run` stops here and prints what would be uploaded.
3. Upload (token from `$HF_TOKEN`, never printed): per repo `create_repo(exist_ok=True)` then one `upload_folder`
   commit of the whole staged folder, dataset first, then model, then Space (each refers to the ones before).
   A failure names the repo and the files still missing there; rerunning the same command finishes the release,
   because repo creation is idempotent and `upload_folder` skips files that are already committed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TOKEN_ENV = "HF_TOKEN"
REPO_TYPES = ("dataset", "model", "space")  # upload order: a repo only refers to repos uploaded before it
SPACE_CONFIG_FILE = "wvlp_space.json"  # tells the Space app which model and dataset repo to load
_SKIP = {"__pycache__", ".cache", ".gradio", ".ipynb_checkpoints", ".git"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")

# Run by a fresh interpreter in an empty folder: proves the staged model needs nothing from this project.
_MODEL_CHECK = textwrap.dedent(
    """
    import json, sys
    import torch
    from PIL import Image
    from transformers import AutoModel, AutoProcessor
    folder = sys.argv[1]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    inputs = processor(images=[Image.new("RGB", (28, 28), "white")], text=["a photo of a shoe"])
    with torch.no_grad():
        image = model.get_image_features(inputs["pixel_values"]).pooler_output
        text = model.get_text_features(inputs["input_ids"], inputs["attention_mask"]).pooler_output
        itm = model.itm_score(inputs["input_ids"], inputs["attention_mask"], pixel_values=inputs["pixel_values"])
    project = sorted(m for m in sys.modules if m.split(".")[0] in ("modeling_wvlp", "dataset_builder", "train"))
    assert not project, f"the project was imported: {project}"
    print(json.dumps({"class": type(model).__module__ + "." + type(model).__name__, "embed_dim": image.shape[-1],
                      "text_dim": text.shape[-1], "itm": float(itm[0])}))
    """
)


class PublishError(RuntimeError):
    """A release that cannot be staged, validated or uploaded; the message says which input or repo and why."""


@dataclass
class ReleasePlan:
    """The staged folders, their target repos and files."""

    staging: Path
    repos: dict[str, str]  # repo type -> "org/name"
    folders: dict[str, Path]
    files: dict[str, list[str]] = field(default_factory=dict)
    checks: dict[str, str] = field(default_factory=dict)
    uploaded: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """Human-readable summary: per repo, the files and their sizes."""
        lines = []
        for kind in REPO_TYPES:
            folder = self.folders[kind]
            sizes = [(name, (folder / name).stat().st_size) for name in self.files[kind]]
            lines.append(f"{kind} repo {self.repos[kind]} <- {folder} ({len(sizes)} files, "
                         f"{sum(s for _, s in sizes) / 1e6:.2f} MB)")
            lines += [f"    {name} ({size:,} bytes)" for name, size in sizes]
            if kind in self.checks:
                lines.append(f"    check: {self.checks[kind]}")
        return "\n".join(lines)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _copy_tree(source: Path, target: Path) -> None:
    shutil.copytree(source, target, ignore=lambda _, names: [n for n in names if n in _SKIP or n.endswith(".pyc")])


def _folder_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in _files(folder):
        digest.update(name.encode() + b"\0")
        with open(folder / name, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def resolve_model_folder(path: str | os.PathLike) -> tuple[Path, Path | None]:
    """(the published model folder, the run folder or None): `path` is a run folder (with `model/`) or a model folder."""
    path = Path(path)
    if (path / "model" / "config.json").is_file():
        return path / "model", path
    if (path / "config.json").is_file():
        return path, None
    raise PublishError(f"--model {path}: neither a model folder (config.json) nor a run folder (model/config.json)")


def _training_facts(run: Path | None) -> dict[str, Any]:
    """A few facts of the run for the card, from its `metrics.json` (absent: none)."""
    if run is None or not (run / "metrics.json").is_file():
        return {}
    try:
        metrics = json.loads((run / "metrics.json").read_text())
    except json.JSONDecodeError as err:
        raise PublishError(f"{run / 'metrics.json'} is not valid JSON: {err}") from err
    facts = {}
    if metrics.get("config"):
        facts["config"] = Path(str(metrics["config"])).name
    train = metrics.get("train") or {}
    for key in ("train_runtime", "train_loss", "epoch"):
        if isinstance(train.get(key), (int, float)):
            facts[key] = round(float(train[key]), 4)
    return facts


def stage_model(model_dir: str | os.PathLike, target: Path, model_id: str, dataset_id: str, space_id: str,
                eval_jsons: Sequence[str | os.PathLike] = ()) -> None:
    """Copies the model folder into `target` and writes the rendered model card as its README.md."""
    from train.model_card import EvalFileError, render_model_card

    folder, run = resolve_model_folder(model_dir)
    for needed in ("model.safetensors", "configuration_wvlp.py", "modeling_wvlp.py", "processor_config.json"):
        if not (folder / needed).is_file() and not list(folder.glob(needed.replace(".safetensors", "*.safetensors"))):
            raise PublishError(f"--model {folder}: {needed} is missing (save with WVLPModel.save_pretrained and "
                               "WVLPProcessor.save_pretrained into the same folder)")
    _copy_tree(folder, target)
    (target / "README.md").unlink(missing_ok=True)
    config = json.loads((folder / "config.json").read_text())
    try:
        card = render_model_card(list(eval_jsons), model_id=model_id, dataset_id=dataset_id, space_id=space_id,
                                 model_config=config, training=_training_facts(run))
    except EvalFileError as err:
        raise PublishError(f"--eval: {err}") from err
    card.save(target / "README.md")


def stage_dataset(dataset_dir: str | os.PathLike, target: Path) -> None:
    """Copies the corpus (parquet shards + README card) into `target`."""
    folder = Path(dataset_dir)
    if not (folder / "README.md").is_file() or not list(folder.rglob("*.parquet")):
        raise PublishError(f"--dataset {folder}: expected a `wvlp describe` corpus (README.md + parquet shards)")
    _copy_tree(folder, target)


def stage_space(space_dir: str | os.PathLike, target: Path, model_id: str, dataset_id: str) -> None:
    """Copies the Space and points its README YAML and `wvlp_space.json` at the model and dataset repos."""
    from huggingface_hub import SpaceCard

    folder = Path(space_dir)
    for needed in ("app.py", "README.md", "requirements.txt"):
        if not (folder / needed).is_file():
            raise PublishError(f"--space {folder}: {needed} is missing")
    _copy_tree(folder, target)
    card = SpaceCard.load(target / "README.md")
    card.data.models = [model_id]
    card.data.datasets = [dataset_id]
    card.save(target / "README.md")
    (target / SPACE_CONFIG_FILE).write_text(json.dumps({"model": model_id, "dataset": dataset_id}, indent=2) + "\n")


def check_model_folder(folder: Path, timeout_s: float = 300) -> str:
    """Loads the staged model and processor with remote code in a fresh interpreter outside the project."""
    with tempfile.TemporaryDirectory(prefix="wvlp-check-") as tmp:
        script = Path(tmp) / "check.py"
        script.write_text(_MODEL_CHECK)
        # An empty cwd and HOME and no PYTHONPATH: only the venv's packages and the staged folder are visible.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, "HF_HUB_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}  # fmt: skip
        proc = subprocess.run([sys.executable, str(script), str(folder.resolve())], cwd=tmp, env=env,
                              capture_output=True, text=True, timeout=timeout_s)  # fmt: skip
    if proc.returncode != 0:
        raise PublishError(f"the staged model {folder} does not load with trust_remote_code in a fresh process:\n"
                           f"{proc.stderr.strip()[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return f"AutoModel + AutoProcessor load with trust_remote_code in a fresh process ({result['class']})"


def check_dataset_folder(folder: Path) -> str:
    """Loads every config of the staged dataset card with `load_dataset` (no code, parquet only)."""
    import datasets
    from huggingface_hub import DatasetCard

    try:
        card = DatasetCard.load(folder / "README.md")
    except Exception as err:
        raise PublishError(f"the dataset card {folder / 'README.md'} does not parse: {err}") from err
    configs = [c["config_name"] for c in (card.data.to_dict().get("configs") or [])] or [None]
    counts = []
    with tempfile.TemporaryDirectory(prefix="wvlp-ds-") as cache:
        for config in configs:
            try:
                loaded = datasets.load_dataset(str(folder), config, cache_dir=cache)
            except Exception as err:
                raise PublishError(f"the staged dataset {folder} does not load config {config!r}: {err}") from err
            counts.append(f"{config}: " + ", ".join(f"{split} {len(ds)}" for split, ds in loaded.items()))
    return "load_dataset: " + "; ".join(counts)


def check_model_card(folder: Path, model_id: str) -> str:
    """The model card's YAML parses and declares what the Hub needs for remote-code zero-shot models."""
    from huggingface_hub import ModelCard

    card = ModelCard.load(folder / "README.md")
    data = card.data.to_dict()
    problems = [f"{key} is {data.get(key)!r}" for key, value in
                (("license", "apache-2.0"), ("library_name", "transformers"),
                 ("pipeline_tag", "zero-shot-image-classification")) if data.get(key) != value]  # fmt: skip
    if "custom_code" not in (data.get("tags") or []):
        problems.append("tags lack custom_code")
    if problems:
        raise PublishError(f"the model card of {model_id}: " + "; ".join(problems))
    return f"card YAML parses ({len(card.data.eval_results or [])} model-index results)"


def check_space_folder(folder: Path, model_id: str, dataset_id: str) -> str:
    """The Space README YAML parses and points at the release's repos; app.py compiles."""
    text = (folder / "README.md").read_text()
    match = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    if not match:
        raise PublishError(f"{folder / 'README.md'}: no YAML header")
    try:
        header = yaml.safe_load(match.group(1))
    except yaml.YAMLError as err:
        raise PublishError(f"{folder / 'README.md'}: the YAML header does not parse: {err}") from err
    problems = [f"{key}={header.get(key)!r}" for key, ok in
                (("sdk", header.get("sdk") == "gradio"), ("app_file", (folder / str(header.get("app_file"))).is_file()),
                 ("models", header.get("models") == [model_id]),
                 ("datasets", header.get("datasets") == [dataset_id])) if not ok]  # fmt: skip
    if problems:
        raise PublishError(f"the Space README {folder / 'README.md'} is wrong: " + ", ".join(problems))
    app = folder / header["app_file"]
    try:
        compile(app.read_text(), str(app), "exec")  # syntax only: the Space's packages need not be installed here
    except SyntaxError as err:
        raise PublishError(f"the Space app {app} does not compile: {err}") from err
    return f"Space YAML parses (sdk gradio {header.get('sdk_version')}), app compiles"


def repo_ids(org: str, model_name: str, dataset_name: str, space_name: str) -> dict[str, str]:
    """The three repo ids, checked against the Hub's naming rules."""
    names = {"model": model_name, "dataset": dataset_name, "space": space_name}
    for label, value in {"org": org, **names}.items():
        if not value or not _NAME.match(value) or "--" in value or ".." in value:
            raise PublishError(f"--{label if label == 'org' else label + '-name'} {value!r} is not a valid Hub name "
                               "(letters, digits, '-', '_', '.'; at most 96 characters)")
    return {kind: f"{org}/{name}" for kind, name in names.items()}


def stage_release(model_dir: str | os.PathLike, dataset_dir: str | os.PathLike, space_dir: str | os.PathLike,
                  repos: dict[str, str], staging: str | os.PathLike,
                  eval_jsons: Sequence[str | os.PathLike] = ()) -> ReleasePlan:
    """Builds the three staged folders afresh (a previous staging of the same release is replaced)."""
    staging = Path(staging)
    staging.mkdir(parents=True, exist_ok=True)
    folders = {kind: staging / kind for kind in REPO_TYPES}
    for folder in folders.values():
        shutil.rmtree(folder, ignore_errors=True)
    stage_dataset(dataset_dir, folders["dataset"])
    stage_model(model_dir, folders["model"], repos["model"], repos["dataset"], repos["space"], eval_jsons)
    stage_space(space_dir, folders["space"], repos["model"], repos["dataset"])
    return ReleasePlan(staging, repos, folders, {kind: _files(folders[kind]) for kind in REPO_TYPES})


def validate_release(plan: ReleasePlan) -> None:
    """Runs every check; the fresh-process model load is skipped when that exact folder already passed it."""
    marker = plan.staging / "validated.json"
    done = json.loads(marker.read_text()) if marker.is_file() else {}
    model_hash = _folder_hash(plan.folders["model"])
    plan.checks["model"] = check_model_card(plan.folders["model"], plan.repos["model"])
    if done.get("model") != model_hash:
        done.pop("model", None)
        marker.write_text(json.dumps(done))
        plan.checks["model"] += "; " + check_model_folder(plan.folders["model"])
        done["model"] = model_hash
        marker.write_text(json.dumps(done))
    else:
        plan.checks["model"] += "; fresh-process load passed before for identical content"
    plan.checks["dataset"] = check_dataset_folder(plan.folders["dataset"])
    plan.checks["space"] = check_space_folder(plan.folders["space"], plan.repos["model"], plan.repos["dataset"])


def _redact(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


def upload_release(plan: ReleasePlan, api: Any, private: bool = False, token: str | None = None) -> list[str]:
    """create_repo(exist_ok=True) + one upload_folder commit per repo; returns the commit URLs."""
    commits = []
    for kind in REPO_TYPES:
        repo_id, folder = plan.repos[kind], plan.folders[kind]
        extra = {"space_sdk": "gradio"} if kind == "space" else {}
        try:
            api.create_repo(repo_id, repo_type=kind, private=private, exist_ok=True, **extra)
        except Exception as err:
            raise PublishError(f"creating {kind} repo {repo_id} failed: {_redact(str(err), token)}; nothing was "
                               f"uploaded to it. Fix the cause and rerun the same command.") from None
        try:
            info = api.upload_folder(repo_id=repo_id, repo_type=kind, folder_path=str(folder),
                                     commit_message=f"wvlp release: {kind} ({len(plan.files[kind])} files)")  # fmt: skip
        except Exception as err:
            missing = _missing_files(api, repo_id, kind, plan.files[kind])
            raise PublishError(
                f"uploading to {kind} repo {repo_id} failed: {_redact(str(err), token)}\n"
                f"  files not on the Hub yet: {', '.join(missing)}\n"
                f"  already published: {', '.join(plan.uploaded) or 'nothing'}. Rerun the same command to finish: "
                "repos are created idempotently and files already committed are skipped."
            ) from None
        plan.uploaded.append(repo_id)
        commits.append(str(getattr(info, "commit_url", None) or info))
    return commits


def _missing_files(api: Any, repo_id: str, kind: str, files: list[str]) -> list[str]:
    """The staged files not in the repo (all of them when the repo cannot be listed)."""
    try:
        present = set(api.list_repo_files(repo_id, repo_type=kind))
    except Exception:
        return files
    return [name for name in files if name not in present] or files


def publish(model_dir: str | os.PathLike, dataset_dir: str | os.PathLike, space_dir: str | os.PathLike, org: str, *,
            eval_jsons: Sequence[str | os.PathLike] = (), private: bool = False, dry_run: bool = False,
            staging: str | os.PathLike = "out/release", model_name: str = "wvlp",
            dataset_name: str = "wvlp-descriptions", space_name: str = "wvlp-demo", api: Any = None) -> ReleasePlan:
    """Stage, validate and (unless `dry_run`) upload a release; `api` defaults to `HfApi(token=$HF_TOKEN)`."""
    repos = repo_ids(org, model_name, dataset_name, space_name)
    token = os.environ.get(TOKEN_ENV) or None
    if not dry_run and api is None and not token:
        raise PublishError(f"${TOKEN_ENV} is not set: export a write token (or use --dry-run to only stage and check)")
    plan = stage_release(model_dir, dataset_dir, space_dir, repos, staging, eval_jsons)
    validate_release(plan)
    print(plan.describe())
    if dry_run:
        print("dry run: nothing uploaded")
        return plan
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    for url in upload_release(plan, api, private=private, token=token):
        print(f"committed {url}")
    print("published: " + ", ".join(f"{kind} {repo}" for kind, repo in repos.items()))
    return plan


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `wvlp publish` options."""
    parser.add_argument("--model", required=True, help="run folder (with model/) or a saved model+processor folder")
    parser.add_argument("--dataset", required=True, help="corpus folder written by `wvlp describe`")
    parser.add_argument("--space", default="spaces_demo", help="Space folder (app.py, README.md, requirements.txt)")
    parser.add_argument("--org", required=True, help="Hub user or organisation that owns the three repos")
    parser.add_argument("--eval", action="append", default=[], metavar="JSON", help="wvlp-eval/1 file (repeatable)")
    parser.add_argument("--private", action="store_true", help="create the repos private")
    parser.add_argument("--dry-run", action="store_true", help="stage and validate, print the plan, upload nothing")
    parser.add_argument("--staging", default="out/release", help="where the three staged folders are written")
    parser.add_argument("--model-name", default="wvlp")
    parser.add_argument("--dataset-name", default="wvlp-descriptions")
    parser.add_argument("--space-name", default="wvlp-demo")


def run_from_args(args: argparse.Namespace) -> ReleasePlan:
    """`wvlp publish` with parsed arguments; a `PublishError` exits with its message and status 1."""
    try:
        return publish(args.model, args.dataset, args.space, args.org, eval_jsons=args.eval, private=args.private,
                       dry_run=args.dry_run, staging=args.staging, model_name=args.model_name,
                       dataset_name=args.dataset_name, space_name=args.space_name)  # fmt: skip
    except PublishError as err:
        print(f"wvlp publish: {err}", file=sys.stderr)
        raise SystemExit(1) from None


__all__ = ["PublishError", "ReleasePlan", "add_arguments", "publish", "run_from_args", "stage_release",
           "upload_release", "validate_release"]  # fmt: skip

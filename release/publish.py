"""`wvlp publish`: stage, validate and upload the three repositories of a release (model, dataset, Space).

    wvlp publish --model out/run --dataset out/corpus --space spaces_demo --org my-org --eval out/eval.json [--dry-run]

1. Stage: `<staging>/model` (weights, config, remote code, processor, rendered card), `<staging>/dataset` (parquet
   shards + card), `<staging>/space` (app, requirements, Space README whose YAML points at the two other repos).
   Each input is published from an allow-list: a file a release does not publish is refused by name, never skipped
   and never uploaded (only caches, bytecode and the project's `.wvlp-output.json` marker are left out silently).
   The three folders are staged aside in `<staging>.partial` and swapped in at once, so an input that lies inside a
   previous staging (`--model out/release/model --staging out/release`) is read in full before that staging goes;
   a `--staging` folder holding files this project did not write is refused before anything is written.
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
import ast
import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wvlp.common.errors import UserInputError
from wvlp.common.safe_io import (
    MARKER,
    RELEASE,
    STAGING,
    UnsafeOutputError,
    check_outside,
    check_writable,
    claim_dir,
    remove_dir,
    replace_dir,
)

TOKEN_ENV = "HF_TOKEN"
REPO_TYPES = ("dataset", "model", "space")  # upload order: a repo only refers to repos uploaded before it
SPACE_CONFIG_FILE = "wvlp_space.json"  # tells the Space app which model and dataset repo to load
_SKIP = {"__pycache__", ".cache", ".gradio", ".ipynb_checkpoints", ".git"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_WEIGHT_SHARD = re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$")
_MODEL_FILES = {
    "model.safetensors",
    "model.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "processor_config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "README.md",
}
_CODE_CONFIGS = ("config.json", "processor_config.json", "preprocessor_config.json", "tokenizer_config.json")
_DATASET_FILES = {"README.md", "stats.json"}  # plus data/**/*.parquet
_SECRETS = (".env", ".env.*", "*.pem", "id_rsa*", "*token*")  # fnmatch patterns of lower-cased file names
MIN_VOCAB = 1000  # a real BERT-like vocabulary has tens of thousands of tokens; a placeholder one has a handful

# Run by a fresh interpreter in an empty folder: proves the staged model needs nothing from this project.
_MODEL_CHECK = textwrap.dedent(
    """
    import json, sys
    import torch
    from PIL import Image
    from transformers import AutoModel, AutoProcessor
    folder, min_vocab = sys.argv[1], int(sys.argv[2])
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    # A placeholder vocabulary loads and runs but makes the model evaluate at chance: exit 3 says what is wrong.
    tokenizer, limit = processor.tokenizer, model.config.text_config.vocab_size
    sentence = "a photo of a black leather shoe on a white background"
    ids = tokenizer(sentence, add_special_tokens=False)["input_ids"]
    problems = [text for bad, text in (
        (len(tokenizer) < min_vocab, f"its tokenizer has only {len(tokenizer)} tokens (at least {min_vocab} expected: "
                                     "a placeholder vocabulary? tokenizer.json may be missing)"),
        (len(tokenizer) > limit, f"its tokenizer has {len(tokenizer)} tokens, more than the text_config.vocab_size "
                                 f"{limit} of config.json (not the tokenizer the model was trained with)"),
        (not ids or set(ids) == {tokenizer.unk_token_id}, f"its tokenizer turns {sentence!r} into [UNK] only"),
    ) if bad]
    if problems:
        print("; ".join(problems), file=sys.stderr)
        sys.exit(3)
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


class PublishError(UserInputError, RuntimeError):
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
            lines.append(
                f"{kind} repo {self.repos[kind]} <- {folder} ({len(sizes)} files, "
                f"{sum(s for _, s in sizes) / 1e6:.2f} MB)"
            )
            lines += [f"    {name} ({size:,} bytes)" for name, size in sizes]
            if kind in self.checks:
                lines.append(f"    check: {self.checks[kind]}")
        return "\n".join(lines)


def _files(folder: Path, everything: bool = False) -> list[str]:
    """Relative paths of the files under `folder`; unless `everything`, without caches, bytecode and the marker."""
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    if everything:
        return names
    return [n for n in names if n != MARKER and not n.endswith(".pyc") and not _SKIP.intersection(Path(n).parts)]


def _copy_files(source: Path, target: Path, names: Iterable[str]) -> None:
    for name in names:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, target / name)


def _read_json(path: Path) -> dict[str, Any]:
    """The JSON object in `path`; a PublishError names the file and what is wrong with it."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PublishError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise PublishError(f"{path} holds a JSON {type(data).__name__}, not an object")
    return data


def _load_card(card_class: Any, path: Path) -> Any:
    """`card_class.load(path)`; a PublishError names the card whose YAML header does not parse."""
    try:
        return card_class.load(path)
    except Exception as err:
        raise PublishError(f"the card {path} does not parse: {err}") from err


def _allow_listed(what: str, folder: Path, allowed: Callable[[str], bool], holds: str) -> list[str]:
    """The files of `folder` to publish; a PublishError names every file `allowed` refuses (none is skipped)."""
    files = _files(folder)
    refused = [name for name in files if not allowed(name)]
    if refused:
        raise PublishError(
            f"{what} {folder} holds files a release does not publish: {', '.join(refused)}; a release "
            f"holds only {holds}: move the others out of {folder} and rerun"
        )
    return files


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
    metrics = _read_json(run / "metrics.json")
    facts = {}
    if metrics.get("config"):
        facts["config"] = Path(str(metrics["config"])).name
    train = metrics.get("train") or {}
    for key in ("train_runtime", "train_loss", "epoch"):
        if isinstance(train.get(key), (int, float)):
            facts[key] = round(float(train[key]), 4)
    return facts


def _auto_map_modules(data: Any) -> set[str]:
    """The local modules every `auto_map` in a parsed config names (`repo--module.Class` lives elsewhere)."""
    if not isinstance(data, dict):
        return set()
    found: set[str] = set()
    for key, value in data.items():
        if key == "auto_map" and isinstance(value, dict):
            refs = [ref for item in value.values() for ref in (item if isinstance(item, list) else [item])]
            found |= {ref.rsplit(".", 1)[0] for ref in refs if isinstance(ref, str) and "." in ref and "--" not in ref}
        else:
            found |= _auto_map_modules(value)
    return found


def remote_code_files(folder: Path) -> set[str]:
    """The `*.py` files the folder's auto_maps name, plus the sibling modules they import (relatively), in turn."""
    pending = [
        (module, f"the auto_map of {name}")
        for name in _CODE_CONFIGS
        if (folder / name).is_file()
        for module in sorted(_auto_map_modules(_read_json(folder / name)))
    ]
    found: set[str] = set()
    while pending:
        module, referrer = pending.pop()
        name = module.replace(".", "/") + ".py"
        if name in found:
            continue
        if not (folder / name).is_file():
            raise PublishError(f"--model {folder}: {name} is missing (named by {referrer})")
        found.add(name)
        try:
            tree = ast.parse((folder / name).read_text(), str(folder / name))
        except (SyntaxError, UnicodeDecodeError) as err:
            raise PublishError(f"--model {folder}: the remote code {name} does not parse: {err}") from err
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                pending += [(m, name) for m in ([node.module] if node.module else [a.name for a in node.names])]
    return found


def model_release_files(folder: Path) -> list[str]:
    """The files of model folder `folder` a release publishes; any other file is refused by name, not skipped."""
    names = {p.name for p in folder.iterdir()}
    shards = {n for n in names if _WEIGHT_SHARD.match(n)}
    # The remote code modeling_wvlp.py imports by relative import (losses.py and the EfficientNet tower come with it).
    code_files = ("configuration_wvlp.py", "modeling_wvlp.py", "modeling_text.py", "modeling_bridge.py")
    for needed in ("model.safetensors", *code_files, "processor_config.json"):
        if needed not in names and not (needed == "model.safetensors" and shards):
            raise PublishError(
                f"--model {folder}: {needed} is missing (save with WVLPModel.save_pretrained and "
                "WVLPProcessor.save_pretrained into the same folder)"
            )
    if shards and "model.safetensors.index.json" not in names:
        raise PublishError(f"--model {folder}: model.safetensors.index.json is missing (sharded weights need it)")
    if not {"tokenizer.json", "vocab.txt"} & names:
        # Without them the processor falls back to a placeholder vocabulary and the model evaluates at chance.
        raise PublishError(
            f"--model {folder}: tokenizer.json is missing (and there is no vocab.txt); save the "
            "processor with WVLPProcessor.save_pretrained into the model folder"
        )
    code = remote_code_files(folder)
    return _allow_listed(
        "--model",
        folder,
        lambda n: n in _MODEL_FILES or n in code or bool(_WEIGHT_SHARD.match(n)),
        "safetensors weights, config.json, generation_config.json, the remote code its auto_map "
        f"names ({', '.join(sorted(code))}), processor/tokenizer files and README.md",
    )


def stage_model(
    model_dir: str | os.PathLike,
    target: Path,
    model_id: str,
    dataset_id: str,
    space_id: str,
    eval_jsons: Sequence[str | os.PathLike] = (),
) -> None:
    """Copies the model folder's allow-listed files into `target` and writes the rendered model card as README.md."""
    from wvlp.evaluation.schema import EvalFileError
    from wvlp.release.model_card import render_model_card

    folder, run = resolve_model_folder(model_dir)
    config = _read_json(folder / "config.json")
    _copy_files(folder, target, [n for n in model_release_files(folder) if n != "README.md"])
    try:
        card = render_model_card(
            list(eval_jsons),
            model_id=model_id,
            dataset_id=dataset_id,
            space_id=space_id,
            model_config=config,
            training=_training_facts(run),
        )
    except EvalFileError as err:
        raise PublishError(f"--eval: {err}") from err
    card.save(target / "README.md")


def stage_dataset(dataset_dir: str | os.PathLike, target: Path) -> None:
    """Copies the corpus (README card, stats.json, data/**/*.parquet; any other file is refused) into `target`."""
    folder = Path(dataset_dir)
    if not (folder / "README.md").is_file() or not list(folder.rglob("*.parquet")):
        raise PublishError(f"--dataset {folder}: expected a `wvlp describe` corpus (README.md + parquet shards)")
    names = _allow_listed(
        "--dataset",
        folder,
        lambda n: n in _DATASET_FILES or (n.startswith("data/") and n.endswith(".parquet")),
        "README.md, stats.json and data/**/*.parquet",
    )
    _copy_files(folder, target, names)


def stage_space(space_dir: str | os.PathLike, target: Path, model_id: str, dataset_id: str) -> None:
    """Copies the Space and points its README YAML and `wvlp_space.json` at the model and dataset repos."""
    from huggingface_hub import SpaceCard

    folder = Path(space_dir)
    for needed in ("app.py", "README.md", "requirements.txt"):
        if not (folder / needed).is_file():
            raise PublishError(f"--space {folder}: {needed} is missing")
    card = _load_card(SpaceCard, folder / "README.md")
    names = _allow_listed(
        "--space",
        folder,
        lambda n: not any(fnmatch.fnmatch(Path(n).name.lower(), p) for p in _SECRETS),
        "the app, its code and assets, never secrets (" + ", ".join(_SECRETS) + ")",
    )
    _copy_files(folder, target, names)
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
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": tmp,
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1",
        }
        proc = subprocess.run(
            [sys.executable, str(script), str(folder.resolve()), str(MIN_VOCAB)],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    if proc.returncode == 3:
        problem = proc.stderr.strip().splitlines()[-1]  # after the loaders' progress bars
        raise PublishError(f"the staged model {folder} loads but would evaluate at chance: {problem}")
    if proc.returncode != 0:
        raise PublishError(
            f"the staged model {folder} does not load with trust_remote_code in a fresh process:\n"
            f"{proc.stderr.strip()[-3000:]}"
        )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return f"AutoModel + AutoProcessor load with trust_remote_code in a fresh process ({result['class']})"


def check_dataset_folder(folder: Path) -> str:
    """Loads every config of the staged dataset card with `load_dataset` (no code, parquet only)."""
    import datasets
    from huggingface_hub import DatasetCard

    card = _load_card(DatasetCard, folder / "README.md")
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

    card = _load_card(ModelCard, folder / "README.md")
    data = card.data.to_dict()
    problems = [
        f"{key} is {data.get(key)!r}"
        for key, value in (
            ("license", "apache-2.0"),
            ("library_name", "transformers"),
            ("pipeline_tag", "zero-shot-image-classification"),
        )
        if data.get(key) != value
    ]
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
    problems = [
        f"{key}={header.get(key)!r}"
        for key, ok in (
            ("sdk", header.get("sdk") == "gradio"),
            ("app_file", (folder / str(header.get("app_file"))).is_file()),
            ("models", header.get("models") == [model_id]),
            ("datasets", header.get("datasets") == [dataset_id]),
        )
        if not ok
    ]
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
            raise PublishError(
                f"--{label if label == 'org' else label + '-name'} {value!r} is not a valid Hub name "
                "(letters, digits, '-', '_', '.'; at most 96 characters)"
            )
    return {kind: f"{org}/{name}" for kind, name in names.items()}


def _check_apart(staging: Path, sources: dict[str, Path], scratch: Sequence[Path]) -> None:
    """Refuses a staging inside an input (it would be copied into itself) and an input inside a scratch folder."""
    for kind, source in sources.items():
        if source.resolve() == staging.resolve() or source.resolve() in staging.resolve().parents:
            raise PublishError(
                f"--staging {staging} is or lies inside --{kind} {source}: the release would be "
                f"staged into its own input; choose a --staging outside it"
            )
        for folder in scratch:
            check_outside(source, folder, f"--{kind}", "the scratch folder")


def _check_carried(staging: Path, partial: Path, sources: dict[str, Path]) -> None:
    """Refuses the swap when an input inside the old staging holds a file the new staging would not have again."""
    for kind, source in sources.items():
        if staging.resolve() not in source.resolve().parents:
            continue
        replacement = partial / source.resolve().relative_to(staging.resolve())
        lost = [n for n in _files(source, everything=True) if not (replacement / n).is_file()]
        if lost:
            raise PublishError(
                f"--{kind} {source} lies inside --staging {staging}, which is replaced, and holds files "
                f"the release does not carry: {', '.join(lost)}; move them out or copy the folder "
                "elsewhere and publish from there"
            )


def stage_release(
    model_dir: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    space_dir: str | os.PathLike,
    repos: dict[str, str],
    staging: str | os.PathLike,
    eval_jsons: Sequence[str | os.PathLike] = (),
) -> ReleasePlan:
    """Stages the three folders in `<staging>.partial` and swaps it in for a previous staging (any other is refused).

    Inputs may lie inside the previous staging: they are read in full before it is replaced, and the swap is
    refused if one holds a file the new staging lacks. Files publish writes itself (the model and Space READMEs,
    wvlp_space.json) are rendered again from the arguments; every other byte is copied as it is.
    """
    staging = Path(staging)
    try:
        check_writable(staging, RELEASE, "--staging")
        if staging.is_symlink():
            raise PublishError(f"--staging {staging} is a symbolic link; give the folder it points to")
        absolute = Path(os.path.abspath(staging))
        partial, old = (absolute.with_name(absolute.name + suffix) for suffix in (".partial", ".old"))
        check_writable(old, RELEASE, "the previous staging")
        sources = {"dataset": Path(dataset_dir), "model": resolve_model_folder(model_dir)[0], "space": Path(space_dir)}
        _check_apart(staging, sources, (partial, old))
        remove_dir(partial, STAGING, "the scratch folder")  # left by an interrupted run
        claim_dir(partial, STAGING, "the scratch folder")
        try:
            stage_dataset(dataset_dir, partial / "dataset")
            stage_model(model_dir, partial / "model", repos["model"], repos["dataset"], repos["space"], eval_jsons)
            stage_space(space_dir, partial / "space", repos["model"], repos["dataset"])
            _check_carried(staging, partial, sources)
            if (staging / "validated.json").is_file():  # keyed by content: still true for identical folders
                shutil.copy2(staging / "validated.json", partial / "validated.json")
            replace_dir(partial, staging, RELEASE, "--staging")
        finally:
            shutil.rmtree(partial, ignore_errors=True)  # only ours, and absent after a successful swap
    except UnsafeOutputError as err:
        raise PublishError(str(err)) from None
    folders = {kind: staging / kind for kind in REPO_TYPES}
    return ReleasePlan(staging, repos, folders, {kind: _files(folders[kind]) for kind in REPO_TYPES})


def validate_release(plan: ReleasePlan) -> None:
    """Runs every check; the fresh-process model load is skipped when that exact folder already passed it."""
    marker = plan.staging / "validated.json"
    try:
        done = _read_json(marker) if marker.is_file() else {}
    except PublishError:
        done = {}  # our own record of passed checks: an unreadable one only means they run again
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
            raise PublishError(
                f"creating {kind} repo {repo_id} failed: {_redact(str(err), token)}; nothing was "
                f"uploaded to it. Fix the cause and rerun the same command."
            ) from None
        try:
            info = api.upload_folder(
                repo_id=repo_id,
                repo_type=kind,
                folder_path=str(folder),
                commit_message=f"wvlp release: {kind} ({len(plan.files[kind])} files)",
            )
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


def publish(
    model_dir: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    space_dir: str | os.PathLike,
    org: str,
    *,
    eval_jsons: Sequence[str | os.PathLike] = (),
    private: bool = False,
    dry_run: bool = False,
    staging: str | os.PathLike = "out/release",
    model_name: str = "wvlp",
    dataset_name: str = "wvlp-descriptions",
    space_name: str = "wvlp-demo",
    api: Any = None,
) -> ReleasePlan:
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
    """`wvlp publish` with parsed arguments (the CLI turns a `PublishError` into its one-line message and status 2)."""
    return publish(
        args.model,
        args.dataset,
        args.space,
        args.org,
        eval_jsons=args.eval,
        private=args.private,
        dry_run=args.dry_run,
        staging=args.staging,
        model_name=args.model_name,
        dataset_name=args.dataset_name,
        space_name=args.space_name,
    )


__all__ = [
    "PublishError",
    "ReleasePlan",
    "add_arguments",
    "publish",
    "run_from_args",
    "stage_release",
    "upload_release",
    "validate_release",
]

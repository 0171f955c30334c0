"""Faults of `wvlp publish`: inputs and unrelated folders survive byte for byte, inputs are allow-listed, the
tokenizer is checked for real, and broken JSON/YAML inputs are named."""

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from wvlp.cli import main as wvlp
from wvlp.common.errors import USER_ERROR_STATUS
from wvlp.release.publish import PublishError, check_model_folder

from tests.helpers import TOKEN, cli_args

pytestmark = pytest.mark.slow  # `wvlp publish` checks every release in a fresh interpreter

SPACE = Path(__file__).resolve().parents[1] / "spaces_demo"
MODEL_FILES = {
    "config.json",
    "model.safetensors",
    "configuration_wvlp.py",
    "modeling_wvlp.py",
    "losses.py",
    "modeling_bridge.py",
    "modeling_efficientnet_lite.py",
    "modeling_text.py",
    "processing_wvlp.py",
    "image_processing_wvlp.py",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "README.md",
}


def hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def copy_of(source: Path, target: Path, extra: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> Path:
    """A copy of `source` at `target` with `extra` files written into it and `drop` files removed."""
    shutil.copytree(source, target)
    for name in drop:
        (target / name).unlink()
    for name, text in (extra or {}).items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_text(text)
    return target


def publish_args(release, model, dataset, space, *extra: str) -> list[str]:
    """`cli_args` with other inputs (the default staging `out/release` unless `extra` names one)."""
    args = cli_args(release, *extra)
    staging = args.index("--staging")
    del args[staging : staging + 2]
    for flag, value in (("--model", model), ("--dataset", dataset), ("--space", space)):
        args[args.index(flag) + 1] = str(value)
    return args


def exit_code(args: list[str]) -> int:
    """The exit status of a `wvlp` command (0 when it returns)."""
    try:
        wvlp(args)
    except SystemExit as exit_info:
        return int(exit_info.code or 0)
    return 0


def assert_unchanged(staging: Path, before: dict[str, dict[str, str]]) -> None:
    """The staged folders hold the same number of files, with the same bytes, as `before`."""
    after = {kind: hashes(staging / kind) for kind in before}
    assert {kind: len(files) for kind, files in after.items()} == {kind: len(files) for kind, files in before.items()}
    assert after == before


def refused(args: list[str], capsys) -> str:
    """The stderr of a `wvlp` command that must exit with the user-error status."""
    with pytest.raises(SystemExit) as exit_info:
        wvlp(args)
    assert exit_info.value.code == USER_ERROR_STATUS
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err
    return out.err


def test_republishing_the_staging_folder_keeps_every_input(release, hub, tmp_path, monkeypatch, capsys):
    """Defect 1: `--model out/release/model --staging out/release` (the demo's release) used to delete its inputs."""
    monkeypatch.chdir(tmp_path)
    corpus = copy_of(
        release["corpus"],
        tmp_path / "corpus",
        {".wvlp-output.json": '{"kind": "corpus", "written_by": "wvlp"}\n', "stats.json": "{}\n"},
    )
    space = copy_of(SPACE, tmp_path / "space", {"examples/shoe.png": "png", "__pycache__/app.cpython-312.pyc": ""})
    wvlp(publish_args(release, release["run"] / "model", corpus, space, "--dry-run"))  # as the demo does
    staging = Path("out/release")
    before = {kind: hashes(staging / kind) for kind in ("model", "dataset", "space")}
    capsys.readouterr()

    assert sum(len(files) for files in before.values()) > 20

    inputs = ("out/release/model", "out/release/dataset", "out/release/space")
    code = exit_code(publish_args(release, *inputs, "--dry-run"))
    assert_unchanged(staging, before)  # the old code removed the three inputs before copying from them
    assert code == 0
    assert "fresh-process load passed before for identical content" in capsys.readouterr().out
    assert json.loads((staging / ".wvlp-output.json").read_text())["kind"] == "release"
    assert set(before["model"]) == MODEL_FILES
    assert "stats.json" in before["dataset"] and ".wvlp-output.json" not in before["dataset"]
    assert "examples/shoe.png" in before["space"] and not any("__pycache__" in n for n in before["space"])
    assert exit_code(publish_args(release, *inputs)) == 0
    assert "published: " in capsys.readouterr().out
    assert_unchanged(staging, before)
    published = {n: hashlib.sha256(b).hexdigest() for n, b in hub.repos["test-org/wvlp"]["files"].items()}
    assert published == before["model"]
    assert sorted(p.name for p in Path("out").iterdir()) == ["release"]  # no scratch folder is left behind

    # A file the release does not carry (bytecode here) would be lost with the old staging: refused, kept.
    (staging / "space" / "__pycache__").mkdir()
    (staging / "space" / "__pycache__" / "helper.cpython-312.pyc").write_bytes(b"\0bytecode")
    everything = hashes(staging)
    err = refused(publish_args(release, *inputs, "--dry-run"), capsys)
    assert "--space out/release/space lies inside --staging out/release" in err and "helper.cpython-312.pyc" in err
    assert hashes(staging) == everything


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "upload"])
def test_staging_with_unrelated_files_is_refused_untouched(release, hub, tmp_path, capsys, dry_run):
    """Defect 1: a `--staging` folder this project did not write is refused before a byte of it changes."""
    staging = tmp_path / "mine"
    for name, text in {"thesis.tex": "\\chapter{}", "model/notes.md": "my notes", "data/results.csv": "1,2"}.items():
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        (staging / name).write_text(text)
    before = hashes(staging)
    code = exit_code(cli_args(release, "--staging", str(staging), *(["--dry-run"] if dry_run else [])))
    after = hashes(staging)
    assert len(after) == len(before) == 3 and after == before  # the old code removed model/notes.md
    assert code == USER_ERROR_STATUS and hub.calls == []
    err = capsys.readouterr().err
    assert f"--staging {staging} holds files this project did not write" in err and "thesis.tex" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no scratch folder beside it either


def test_staging_inside_an_input_is_refused(release, hub, tmp_path, capsys):
    """Defect 1: a staging inside an input would be copied into itself; refused, naming both."""
    corpus = copy_of(release["corpus"], tmp_path / "corpus")
    before = hashes(corpus)
    err = refused(
        publish_args(release, release["run"], corpus, SPACE, "--dry-run", "--staging", str(corpus / "release")), capsys
    )
    assert f"--staging {corpus / 'release'} is or lies inside --dataset {corpus}" in err
    assert hashes(corpus) == before and hub.calls == []


EXTRAS = {
    "model": {
        ".env": f"HF_TOKEN={TOKEN}\n",
        "pytorch_model.bin": "pickle",
        "training_args.bin": "pickle",
        "checkpoint-5/model.safetensors": "old",
        "checkpoint-5/optimizer.pt": "state",
        "convert_minilm.py": "# not referenced by any auto_map",
    },
    "dataset": {".env": f"HF_TOKEN={TOKEN}\n", "notes.txt": "draft", "data/images/labels.csv": "0,1"},
    "space": {".env": f"HF_TOKEN={TOKEN}\n", "deploy.pem": "key", "id_rsa": "key", "hf_token.txt": TOKEN},
}


@pytest.mark.parametrize("kind", sorted(EXTRAS))
def test_files_outside_the_allow_list_are_refused_by_name(release, hub, tmp_path, capsys, kind):
    """Defect 4: secrets, pickles and checkpoints in an input used to be uploaded (and listed by the dry run)."""
    sources = {"model": release["run"] / "model", "dataset": release["corpus"], "space": SPACE}
    sources[kind] = copy_of(sources[kind], tmp_path / kind, EXTRAS[kind])
    before = hashes(sources[kind])
    err = refused(
        publish_args(
            release,
            sources["model"],
            sources["dataset"],
            sources["space"],
            "--dry-run",
            "--staging",
            str(tmp_path / "staging"),
        ),
        capsys,
    )
    assert f"--{kind} {sources[kind]} holds files a release does not publish" in err
    for name in EXTRAS[kind]:
        assert name in err, name
    assert not (tmp_path / "staging").exists() and hashes(sources[kind]) == before and hub.calls == []


def test_model_without_tokenizer_is_refused_before_staging(release, hub, tmp_path, capsys):
    """Defect 7: without tokenizer.json the processor builds a placeholder vocabulary and the model scores chance."""
    model = copy_of(release["run"] / "model", tmp_path / "model", drop=("tokenizer.json",))
    err = refused(
        publish_args(release, model, release["corpus"], SPACE, "--dry-run", "--staging", str(tmp_path / "staging")),
        capsys,
    )
    assert f"--model {model}: tokenizer.json is missing" in err
    assert not (tmp_path / "staging").exists()


def _placeholder_tokenizer(words: int):
    """A BERT tokenizer of the special tokens plus `words` made-up words (no real English word in it)."""
    from transformers import BertTokenizer

    names = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"zq{i}" for i in range(words)]
    tokenizer = BertTokenizer(vocab={name: i for i, name in enumerate(names)})
    assert len(tokenizer) == len(names)
    return tokenizer


def _with_too_many_tokens():
    from wvlp.modeling import build_default_processor

    tokenizer = build_default_processor().tokenizer
    tokenizer.add_tokens([f"zqextra{i}" for i in range(8)])  # 30530 > the model's text_config.vocab_size 30522
    return tokenizer


@pytest.mark.parametrize(
    ("make_tokenizer", "problem"),
    [
        (lambda: _placeholder_tokenizer(0), r"its tokenizer has only 5 tokens .*\[UNK\] only"),
        (lambda: _placeholder_tokenizer(2000), r"its tokenizer turns 'a photo of a black .*' into \[UNK\] only"),
        (_with_too_many_tokens, r"its tokenizer has 30530 tokens, more than the text_config.vocab_size 30522"),
    ],
    ids=["five-tokens", "all-unk", "larger-than-the-model"],
)
def test_fresh_process_check_rejects_a_wrong_vocabulary(release, tmp_path, make_tokenizer, problem):
    """Defect 7: the fresh-process check must tokenize a sentence, not only load the processor."""
    from wvlp.modeling import WVLPImageProcessor, WVLPProcessor

    model = copy_of(release["run"] / "model", tmp_path / "model", drop=("tokenizer.json", "tokenizer_config.json"))
    WVLPProcessor(WVLPImageProcessor(size=32), make_tokenizer(), max_length=16).save_pretrained(model)
    assert (model / "tokenizer.json").is_file()  # a saved tokenizer, so the check holds however the processor loads
    with pytest.raises(
        PublishError,
        match=rf"the staged model {re.escape(str(model))} loads but would evaluate at "
        rf"chance: {problem}",
    ):
        check_model_folder(model)


@pytest.mark.parametrize(
    ("kind", "name", "text", "problem"),
    [
        ("model", "config.json", "{not json", "is not valid JSON: Expecting property name"),
        ("model", "processor_config.json", "[1, 2", "is not valid JSON: Expecting"),
        ("model", "config.json", "[1, 2]", "holds a JSON list, not an object"),
        ("space", "README.md", "---\nsdk: [gradio\n---\n# demo\n", "does not parse: while parsing a flow sequence"),
    ],
)
def test_broken_json_or_card_names_the_file(release, hub, tmp_path, capsys, kind, name, text, problem):
    """Defect 24: an unparsable config.json (or card) used to end in a traceback that did not name the file."""
    sources = {"model": release["run"] / "model", "dataset": release["corpus"], "space": SPACE}
    sources[kind] = copy_of(sources[kind], tmp_path / kind, {name: text})
    err = refused(
        publish_args(
            release,
            sources["model"],
            sources["dataset"],
            sources["space"],
            "--dry-run",
            "--staging",
            str(tmp_path / "staging"),
        ),
        capsys,
    )
    assert str(sources[kind] / name) in err and problem in err
    assert hub.calls == []

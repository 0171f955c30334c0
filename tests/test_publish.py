"""`wvlp publish` against a recording stand-in for the Hub API, and the model card rendered from eval JSONs."""

import copy
import json
from pathlib import Path

import pytest
from huggingface_hub import HfApi, ModelCard

from train.cli import USER_ERROR_STATUS
from train.cli import main as wvlp
from train.model_card import EvalFileError, load_eval, render_model_card

TOKEN = "hf_TESTtokenThatMustNeverBePrinted"

EVAL = {
    "schema": "wvlp-eval/1",
    "model": {"path": "out/run/model", "stage": "pre-trained", "image_size": 96, "config_sha256": "0" * 64},
    "data": {"name": "fashion-mnist", "split": "test", "num_images": 10000, "num_texts": 69,
             "classnames_file": "classes.txt", "templates_file": "templates.txt"},
    "command": "wvlp evaluate --model out/run --task zero_shot --task retrieval --data fashion-mnist",
    "created": "2026-11-22T10:00:00+00:00",
    "metrics": {
        "zero_shot": {"top1": 0.6123, "top5": 0.9517, "per_class": {"T-shirt/top": 0.701, "Trouser": 0.912},
                      "seen_top1": None, "unseen_top1": None, "harmonic": None},
        "zero_shot_descriptions": {"top1": 0.5802, "top5": 0.9333},
        "retrieval": {
            "itm_k": 16,
            "itc": {"i2t_r1": 0.31, "i2t_r5": 0.62, "i2t_r10": 0.81, "t2i_r1": 0.22, "t2i_r5": 0.51, "t2i_r10": 0.7,
                    "rsum": 3.17, "i2t_mean_rank": 4.2, "i2t_median_rank": 2, "t2i_mean_rank": 5.5, "t2i_median_rank": 3},
            "itm": {"i2t_r1": 0.35, "i2t_r5": 0.66, "i2t_r10": 0.83, "t2i_r1": 0.25, "t2i_r5": 0.55, "t2i_r10": 0.72,
                    "rsum": 3.36, "i2t_mean_rank": 3.9, "i2t_median_rank": 2, "t2i_mean_rank": 5.0, "t2i_median_rank": 3},
        },
        "linear_probe": {"top1": 0.8344, "train_samples": 60000},
    },
}  # fmt: skip


def save_tiny_model(folder: Path) -> Path:
    """A random tiny WVLPModel + the real MiniLM tokenizer, saved like a run's `model/` (remote code included)."""
    from modeling_wvlp import WVLPConfig, WVLPImageProcessor, WVLPModel, WVLPProcessor, build_default_processor
    from tests.conftest import tiny_config_kwargs

    kwargs = tiny_config_kwargs()
    kwargs["text_config"]["vocab_size"] = 30522  # the BERT uncased vocabulary of the real tokenizer
    WVLPModel(WVLPConfig(**kwargs)).eval().save_pretrained(folder)
    tokenizer = build_default_processor().tokenizer
    WVLPProcessor(WVLPImageProcessor(size=32), tokenizer, max_length=16).save_pretrained(folder)
    return folder


class HubRecorder:
    """Stands in for the Hub behind `HfApi`: records calls, keeps committed files, fails on request."""

    def __init__(self):
        self.calls: list[tuple[str, str, dict]] = []
        self.repos: dict[str, dict] = {}  # repo_id -> {"type", "private", "files": {path: bytes}}
        self.fail_uploads: list[str] = []  # repo types whose next upload_folder raises

    def create_repo(self, repo_id, *, repo_type=None, private=None, exist_ok=False, space_sdk=None, **kwargs):
        self.calls.append(("create_repo", repo_id, dict(repo_type=repo_type, exist_ok=exist_ok, space_sdk=space_sdk)))
        if repo_id in self.repos and not exist_ok:
            raise RuntimeError(f"409 Conflict: {repo_id} exists")
        self.repos.setdefault(repo_id, {"type": repo_type, "private": private, "files": {}})
        return f"https://hub.test/{repo_id}"

    def upload_folder(self, *, repo_id, folder_path, repo_type=None, commit_message=None, **kwargs):
        self.calls.append(("upload_folder", repo_id, dict(repo_type=repo_type, commit_message=commit_message)))
        if repo_type in self.fail_uploads:
            self.fail_uploads.remove(repo_type)
            raise ConnectionError("502 Bad Gateway while uploading model.safetensors")
        folder = Path(folder_path)
        files = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        self.repos[repo_id]["files"].update(files)  # one commit: all files or none
        return f"https://hub.test/{repo_id}/commit/{len(self.calls)}"

    def list_repo_files(self, repo_id, *, repo_type=None, **kwargs):
        return sorted(self.repos.get(repo_id, {"files": {}})["files"])


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A run folder (model/ + metrics.json), a template corpus and an eval JSON file."""
    from dataset_builder.template_corpus import write_template_corpus

    tmp = tmp_path_factory.mktemp("release")
    save_tiny_model(tmp / "run" / "model")
    (tmp / "run" / "metrics.json").write_text(json.dumps({"config": "train/configs/tiny.yaml",
                                                          "train": {"train_runtime": 12.5, "train_loss": 3.2}}))
    try:
        corpus = write_template_corpus(tmp / "corpus", images_per_split=4)
    except FileNotFoundError as err:
        pytest.skip(f"Fashion-MNIST is not installed: {err}")
    eval_file = tmp / "eval.json"
    eval_file.write_text(json.dumps(EVAL))
    return {"run": tmp / "run", "corpus": corpus, "eval": eval_file, "staging": tmp / "staging"}


def cli_args(release, *extra):
    return ["publish", "--model", str(release["run"]), "--dataset", str(release["corpus"]), "--space",
            str(Path(__file__).resolve().parents[1] / "spaces_demo"), "--org", "test-org", "--eval",
            str(release["eval"]), "--staging", str(release["staging"]), *extra]  # fmt: skip


@pytest.fixture
def hub(monkeypatch):
    recorder = HubRecorder()
    for name in ("create_repo", "upload_folder", "list_repo_files"):
        monkeypatch.setattr(HfApi, name, getattr(recorder, name))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return recorder


def test_dry_run_stages_validates_and_uploads_nothing(release, hub, capsys):
    wvlp(cli_args(release, "--dry-run"))
    out = capsys.readouterr()
    assert hub.calls == []
    assert "dry run: nothing uploaded" in out.out and TOKEN not in out.out + out.err
    staging = release["staging"]
    for name in ("model.safetensors", "config.json", "modeling_wvlp.py", "configuration_wvlp.py",
                 "processing_wvlp.py", "processor_config.json", "tokenizer.json", "README.md"):
        assert (staging / "model" / name).is_file(), name
        assert f"    {name} (" in out.out
    assert "model repo test-org/wvlp <- " in out.out
    assert list((staging / "dataset" / "data").rglob("*.parquet")) and (staging / "dataset" / "README.md").is_file()
    space_readme = (staging / "space" / "README.md").read_text()
    assert "test-org/wvlp" in space_readme and "test-org/wvlp-descriptions" in space_readme
    assert json.loads((staging / "space" / "wvlp_space.json").read_text())["model"] == "test-org/wvlp"
    # The fresh-process remote-code load ran (and passed) on the staged model folder.
    assert "trust_remote_code in a fresh process (transformers_modules." in out.out
    assert "load_dataset: images: train 4, test 4" in out.out
    # A Space without the project installed searches the published dataset's test images.
    from tests.test_space import load_app

    gallery = load_app()._gallery_from_dataset(str(staging / "dataset"), 3)
    from dataset_builder.fashion_mnist import CLASS_NAMES

    assert len(gallery.images) == 3 and set(gallery.captions) <= set(CLASS_NAMES)


def test_failed_upload_then_rerun_completes_the_release(release, hub, capsys):
    hub.fail_uploads = ["model"]
    with pytest.raises(SystemExit) as exit_info:
        wvlp(cli_args(release))
    assert exit_info.value.code == USER_ERROR_STATUS
    err = capsys.readouterr().err
    assert "model repo test-org/wvlp failed" in err and "model.safetensors" in err and "Rerun" in err
    assert TOKEN not in err
    assert set(hub.repos) == {"test-org/wvlp-descriptions", "test-org/wvlp"}  # the Space was not started
    assert hub.repos["test-org/wvlp"]["files"] == {}

    hub.calls.clear()
    wvlp(cli_args(release))
    out = capsys.readouterr().out
    assert TOKEN not in out and "published: " in out
    assert [c[0] for c in hub.calls] == ["create_repo", "upload_folder"] * 3
    assert all(c[2]["exist_ok"] for c in hub.calls if c[0] == "create_repo")
    assert [c[2]["repo_type"] for c in hub.calls if c[0] == "upload_folder"] == ["dataset", "model", "space"]
    assert hub.repos["test-org/wvlp-demo"]["type"] == "space"
    assert next(c for c in hub.calls if c[1] == "test-org/wvlp-demo")[2]["space_sdk"] == "gradio"
    staging = release["staging"]
    for kind, repo in (("model", "test-org/wvlp"), ("dataset", "test-org/wvlp-descriptions"),
                       ("space", "test-org/wvlp-demo")):  # fmt: skip
        staged = {str(p.relative_to(staging / kind)) for p in (staging / kind).rglob("*") if p.is_file()}
        assert set(hub.repos[repo]["files"]) == staged, kind
    assert {"app.py", "requirements.txt", "README.md", "wvlp_space.json"} <= set(hub.repos["test-org/wvlp-demo"]["files"])
    card = hub.repos["test-org/wvlp"]["files"]["README.md"].decode()
    assert "0.6123" in card and "61.23%" in card


def test_missing_token_is_a_clear_error(release, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(SystemExit):
        wvlp(cli_args(release))
    assert "HF_TOKEN is not set" in capsys.readouterr().err


def test_bad_inputs_name_what_is_wrong(release, tmp_path, capsys, hub):
    broken = tmp_path / "model"
    broken.mkdir()
    for p in (release["run"] / "model").iterdir():
        if p.name != "modeling_wvlp.py":
            (broken / p.name).write_bytes(p.read_bytes())
    args = cli_args(release)
    args[args.index("--model") + 1] = str(broken)
    with pytest.raises(SystemExit):
        wvlp(args)
    assert "modeling_wvlp.py is missing" in capsys.readouterr().err
    args = cli_args(release, "--dry-run")
    args[args.index("--org") + 1] = "bad org!"
    with pytest.raises(SystemExit):
        wvlp(args)
    assert "--org 'bad org!'" in capsys.readouterr().err
    assert hub.calls == []


def test_model_card_yaml_carries_the_numbers(tmp_path):
    finetuned = copy.deepcopy(EVAL)
    finetuned["model"]["stage"] = "fine-tuned"
    finetuned["metrics"] = {"zero_shot": {"top1": 0.7001, "top5": 0.97}}
    card = render_model_card([EVAL, finetuned], model_id="org/wvlp", dataset_id="org/wvlp-descriptions",
                             space_id="org/wvlp-demo", model_config={"embed_dim": 256, "fusion_layer": 3})
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    data = loaded.data.to_dict()
    assert data["license"] == "apache-2.0" and data["library_name"] == "transformers"
    assert data["pipeline_tag"] == "zero-shot-image-classification" and "custom_code" in data["tags"]
    assert data["datasets"] == ["org/wvlp-descriptions"]
    values = {(r.metric_name, r.dataset_name): r.metric_value for r in loaded.data.eval_results}
    assert values[("zero-shot top-1 (pre-trained)", "fashion-mnist")] == 0.6123
    assert values[("zero-shot top-1 (fine-tuned)", "fashion-mnist")] == 0.7001
    assert values[("image-to-text R@1, ITM (pre-trained)", "fashion-mnist")] == 0.35
    assert values[("RSUM (sum of the six recalls), ITC (pre-trained)", "fashion-mnist")] == 3.17
    assert values[("linear probe top-1 (pre-trained)", "fashion-mnist")] == 0.8344
    text = loaded.text
    for fragment in ("61.23%", "83.44%", "T-shirt/top | 70.10%", EVAL["command"], "trust_remote_code=True",
                     "LoRA", "hallucination", "28x28", "no image-caption pair"):
        assert fragment in text, fragment


def test_eval_json_errors_name_the_field(tmp_path):
    bad = copy.deepcopy(EVAL)
    bad["metrics"]["zero_shot"]["top1"] = 61.23  # percent instead of a fraction
    with pytest.raises(EvalFileError, match=r"metrics\.zero_shot\.top1=61\.23"):
        load_eval(bad)
    with pytest.raises(EvalFileError, match="schema"):
        load_eval({**EVAL, "schema": "other/2"})
    with pytest.raises(EvalFileError, match="does not exist"):
        load_eval(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(EvalFileError, match="not valid JSON"):
        load_eval(tmp_path / "broken.json")

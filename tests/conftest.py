"""Test-session setup and the fixtures shared by several test modules (pytest finds them by name); the shared plain
helpers are in tests/helpers.py."""

import json
import os

import pytest
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before huggingface_hub (imported below) reads it
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
torch.set_num_threads(2)
torch.set_flush_denormal(True)  # tiny random models produce denormals, which are very slow on CPU

from huggingface_hub import HfApi  # noqa: E402

from tests.helpers import EVAL, TOKEN, HubRecorder, S, load_app, save_tiny_model, tiny_config_kwargs  # noqa: E402
from tests.openai_server import OpenAIStubServer  # noqa: E402

LLM_TOKEN = "sk-wvlp-test-7f3a9c1e5b"

# --------------------------------------------------------------------------------------------------------------- models


@pytest.fixture
def tiny_config():
    """The `WVLPConfig` of `tiny_config_kwargs()`."""
    from wvlp.modeling import WVLPConfig

    return WVLPConfig(**tiny_config_kwargs())


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A folder with a random tiny `WVLPModel` and the default processor (32 px), as `save_pretrained` writes them."""
    from wvlp.modeling import WVLPConfig, WVLPModel, build_default_processor

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model")
    processor = build_default_processor(32)
    kwargs = tiny_config_kwargs()
    kwargs["text_config"] = {**kwargs["text_config"], "vocab_size": len(processor.tokenizer)}
    WVLPModel(WVLPConfig(**kwargs)).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


# ------------------------------------------------------------------------------------------------------ image processor


@pytest.fixture(scope="module")
def ip():
    """A `WVLPImageProcessor` with output side `S`."""
    from wvlp.modeling.image_processing_wvlp import WVLPImageProcessor

    return WVLPImageProcessor(size=S)


@pytest.fixture(scope="module")
def processor():
    """The default `WVLPProcessor` (MiniLM tokenizer) with output side `S`."""
    from wvlp.modeling.pretrained_assets import build_default_processor

    return build_default_processor(image_size=S)


# --------------------------------------------------------------------------------------------- description LLM backends


@pytest.fixture
def token(monkeypatch):
    """An LLM server token set in WVLP_LLM_TOKEN; the value, to check that it is sent and never leaked."""
    monkeypatch.setenv("WVLP_LLM_TOKEN", LLM_TOKEN)
    return LLM_TOKEN


# -------------------------------------------------------------------------------------------------------------- publish


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A run folder (model/ + metrics.json), a template corpus and an eval JSON file."""
    from wvlp.data.template_corpus import write_template_corpus

    tmp = tmp_path_factory.mktemp("release")
    save_tiny_model(tmp / "run" / "model")
    (tmp / "run" / "metrics.json").write_text(
        json.dumps({"config": "train/configs/tiny.yaml", "train": {"train_runtime": 12.5, "train_loss": 3.2}})
    )
    try:
        corpus = write_template_corpus(tmp / "corpus", images_per_split=4)
    except FileNotFoundError as err:
        pytest.skip(f"Fashion-MNIST is not installed: {err}")
    eval_file = tmp / "eval.json"
    eval_file.write_text(json.dumps(EVAL))
    return {"run": tmp / "run", "corpus": corpus, "eval": eval_file, "staging": tmp / "staging"}


@pytest.fixture
def hub(monkeypatch):
    """A `HubRecorder` behind `HfApi`'s create_repo, upload_folder and list_repo_files, with HF_TOKEN set to `TOKEN`."""
    recorder = HubRecorder()
    for name in ("create_repo", "upload_folder", "list_repo_files"):
        monkeypatch.setattr(HfApi, name, getattr(recorder, name))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return recorder


# ---------------------------------------------------------------------------------------------------------------- Space


@pytest.fixture(scope="module")
def app():
    """spaces_demo/app.py, loaded as a module."""
    return load_app()


@pytest.fixture(scope="module")
def gallery(app):
    """The Space's Fashion-MNIST gallery (48 images); skips when Fashion-MNIST is not installed."""
    try:
        return app.load_gallery(48)
    except RuntimeError as err:
        pytest.skip(f"no Fashion-MNIST gallery: {err}")


@pytest.fixture(scope="module")
def llm_server():
    """A loopback OpenAI stub server, for the Space's describe tab."""
    with OpenAIStubServer() as server:
        yield server


@pytest.fixture(scope="module")
def demo(app, gallery, llm_server, tmp_path_factory):
    """The Space's `WVLPDemo` on a tiny saved model, the gallery and the stub LLM server."""
    folder = save_tiny_model(tmp_path_factory.mktemp("space") / "model")
    return app.WVLPDemo(
        str(folder),
        gallery=gallery,
        embedding_cache=tmp_path_factory.mktemp("emb"),
        llm_spec={"type": "server", "base_url": llm_server.base_url, "max_retries": 0},
    )


@pytest.fixture(scope="module")
def item_png(gallery, tmp_path_factory):
    """The gallery's first image, saved as a PNG file."""
    path = tmp_path_factory.mktemp("img") / "item.png"
    Image.fromarray(gallery.images[0]).save(path)
    return path

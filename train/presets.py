"""Small fixed model sizes and the packaged LMs shared by the training entry points (`train/run.py`,
`train/pformer_run.py`): one definition each, so the tiny WVLP and the tiny P-Former keep the same text tower, and
both stages name and find a frozen LM the same way."""

from pathlib import Path

# The random text tower of `model.init: tiny` (tests and smoke runs): 2 layers, 32 wide, no dropout.
TINY_TEXT = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=128,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)
# The random Llama of `pformer.language_model: tiny`: the same code path as a real LM, milliseconds a step.
TINY_LM = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=2,
    intermediate_size=64,
    max_position_embeddings=256,
)
# Run-config names of the packaged LMs and the stable (Hub) id a saved config records for each: the packaged files
# are found at run time, so no machine path is ever written into a config.
PACKAGED_LANGUAGE_MODELS = {"smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}


def is_machine_path(name: str) -> bool:
    """Whether an LM name is a path on this machine (absolute, or an existing file or folder) rather than a Hub id."""
    return Path(name).expanduser().is_absolute() or Path(name).exists()


def stable_language_model_id(name: str | None) -> str | None:
    """What a saved config records for the LM the run config names: the Hub id of a packaged LM (`smollm2`), None for
    a local folder (a machine path names nothing on another machine: attach the LM when reloading), else the name."""
    if name in PACKAGED_LANGUAGE_MODELS:
        return PACKAGED_LANGUAGE_MODELS[name]
    if name is None or is_machine_path(name):
        return None
    return name


def smollm2_folder() -> Path:
    """The packaged SmolLM2-135M-Instruct as a plain transformers folder (dequantised once into the cache)."""
    from wvlp.data.llm.gguf import default_gguf_path, materialize_gguf, packaged_llm_folder

    gguf = default_gguf_path()
    # Same folder name as LocalTransformersBackend, so the description pipeline and P-Former share one copy.
    return materialize_gguf(gguf, packaged_llm_folder(gguf))


def language_model_folder(name: str) -> str:
    """Where a frozen LM (the bridge's, the P-Former's) is loaded from at run time: the packaged files for a packaged LM (by run-config name
    or Hub id), else `name` itself (a local transformers folder, or a Hub id for transformers to fetch)."""
    if name in PACKAGED_LANGUAGE_MODELS or name in PACKAGED_LANGUAGE_MODELS.values():
        return str(smollm2_folder())
    return name


__all__ = [
    "PACKAGED_LANGUAGE_MODELS",
    "TINY_LM",
    "TINY_TEXT",
    "is_machine_path",
    "language_model_folder",
    "smollm2_folder",
    "stable_language_model_id",
]

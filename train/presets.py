"""Small fixed model sizes and stable names shared by the training entry points (`train/run.py`,
`train/pformer_run.py`): one definition each, so the tiny WVLP and the tiny P-Former keep the same text tower."""

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

__all__ = ["PACKAGED_LANGUAGE_MODELS", "TINY_LM", "TINY_TEXT"]

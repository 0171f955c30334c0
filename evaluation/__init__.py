"""Evaluation of WVLP models: zero-shot classification, image-text retrieval, linear probe, plots, eval JSON.

Submodules are imported on use (`from wvlp.evaluation.retrieval import ...`); `wvlp.evaluation.run.evaluate_model` is the
one entry point that runs a whole evaluation and writes the `wvlp-eval/1` JSON.
"""

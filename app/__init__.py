"""wvlp: prompt-based weakly-supervised vision-language pre-training.

The installed packages are `wvlp.modeling` (the Hub model, losses, processors), `wvlp.data` (labels -> LLM
descriptions -> corpus), `wvlp.train`, `wvlp.evaluation`, `wvlp.release`, and this thin application layer
(`wvlp.cli`, the `wvlp` command, and `wvlp.demo`). Importing `wvlp` imports nothing else.
"""

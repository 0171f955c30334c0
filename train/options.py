"""The command-line options of a training run, defined once: `python train/run.py` and `wvlp train` both take them.

Kept apart from run.py so that building the `wvlp` parser does not import torch.
"""

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a training run; `python train/run.py` and `wvlp train` both take exactly these."""
    parser.add_argument("--config", required=True, help="YAML file (see train/configs/)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set training.max_steps=30 (repeatable)",
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        help="resume from the last checkpoint in output_dir, or from the given checkpoint folder",
    )

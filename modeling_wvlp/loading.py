"""Loading a saved WVLP folder whichever artifact it holds: a published `WVLPModel` or a `WVLPForPreTraining` state.

Local only, like `pretrained_assets.py`: no file that ships with a saved model imports this module, so the Hub copy
never needs it.
"""

import os
from pathlib import Path

from .configuration_wvlp import WVLPConfig
from .modeling_wvlp import WVLPForPreTraining, WVLPModel


def load_wvlp(
    path: str | os.PathLike | None, for_pretraining: bool, setting: str = "model", **config_overrides
) -> WVLPModel | WVLPForPreTraining:
    """The model saved in folder `path`, as a `WVLPForPreTraining` (`for_pretraining`) or a published `WVLPModel`.

    A `WVLPForPreTraining` folder gives its whole training state, or its student when a `WVLPModel` is wanted; a
    `WVLPModel` folder gives that model, or the training state around it (the teacher a copy of the student).
    `config_overrides` are `WVLPConfig` fields (flat pre-training settings included); `setting` names where `path` came
    from in the error message.
    """
    if not path or not (Path(path) / "config.json").is_file():
        shown = str(path) if path is not None else None
        raise FileNotFoundError(
            f"{setting}={shown!r} is not a folder with a saved WVLP model (no config.json): save one with "
            "WVLPModel.save_pretrained or WVLPForPreTraining.save_pretrained"
        )
    folder = Path(path)
    config = WVLPConfig.from_pretrained(folder, **config_overrides)
    saved_for_pretraining = "WVLPForPreTraining" in (config.architectures or [])
    if saved_for_pretraining:
        model = WVLPForPreTraining.from_pretrained(folder, config=config)
        return model if for_pretraining else model.published_model()
    model = WVLPModel.from_pretrained(folder, config=config)
    return WVLPForPreTraining.from_published(model) if for_pretraining else model


__all__ = ["load_wvlp"]

"""Processor of WVLP: the image processor plus the BERT (uncased MiniLM) tokenizer of the text tower.

This file is shipped next to saved models for `trust_remote_code` loading, so it imports only the standard library,
transformers and the sibling `image_processing_wvlp` (relative import, copied along by `save_pretrained`).
"""

import json
import os

from transformers import BatchFeature
from transformers.models.auto.tokenization_auto import tokenizer_class_from_name
from transformers.processing_utils import ProcessorMixin
from transformers.utils import cached_file

from .image_processing_wvlp import WVLPImageProcessor

DEFAULT_MAX_LENGTH = 64

# What `save_pretrained` writes for the fast BERT tokenizer of transformers 5, and the vocabulary of a slow one (from
# which the fast tokenizer can be rebuilt too). With neither, transformers silently builds a BERT tokenizer holding
# only its 5 special tokens, so every word becomes [UNK] and the model scores at chance.
_TOKENIZER_FILE = "tokenizer.json"
_VOCAB_FILE = "vocab.txt"
_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "proxies", "revision", "token")


def _find_file(path: "str | os.PathLike", filename: str, subfolder: str, hub_kwargs: dict) -> str | None:
    """The local path of `filename` in the folder or Hub repo `path`, or None when it has no such file."""
    return cached_file(
        path,
        filename,
        subfolder=subfolder,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
        **hub_kwargs,
    )


def _check_tokenizer_files(path: "str | os.PathLike", subfolder: str = "", **kwargs) -> None:
    """Raises `FileNotFoundError` naming the folder and file when `path` holds no tokenizer vocabulary."""
    hub_kwargs = {key: kwargs[key] for key in _HUB_KWARGS if key in kwargs}
    if any(_find_file(path, name, subfolder, hub_kwargs) for name in (_TOKENIZER_FILE, _VOCAB_FILE)):
        return
    config_file = _find_file(path, "tokenizer_config.json", subfolder, hub_kwargs)
    tokenizer_class = None
    if config_file is not None:
        with open(config_file, encoding="utf-8") as f:
            class_name = json.load(f).get("tokenizer_class")
        tokenizer_class = tokenizer_class_from_name(class_name) if class_name else None
    # A slow tokenizer class (no tokenizer_file among its files) reads vocab.txt; anything else wants tokenizer.json.
    slow = tokenizer_class is not None and "tokenizer_file" not in getattr(tokenizer_class, "vocab_files_names", {})
    missing = _VOCAB_FILE if slow else _TOKENIZER_FILE
    folder = os.path.join(os.fspath(path), subfolder) if subfolder else os.fspath(path)
    raise FileNotFoundError(
        f"cannot load the WVLP tokenizer from {folder!r}: it has no {missing}"
        + ("" if slow else f" (nor {_VOCAB_FILE})")
        + ("" if os.path.isdir(folder) else " or it could not be downloaded")
        + "; the tokenizer cannot be rebuilt without it"
        + ("" if slow else " (transformers would silently build a 5-token vocabulary, every word becoming [UNK])")
        + f". Copy {missing} back from where the processor was saved, or save it again with processor.save_pretrained"
    )


class WVLPProcessor(ProcessorMixin):
    r"""
    Builds the inputs of a WVLP model from images and/or captions: `input_ids`, `attention_mask`, `pixel_values`.

    Args:
        image_processor (`WVLPImageProcessor`, *optional*): a default `WVLPImageProcessor()` when omitted.
        tokenizer (`PreTrainedTokenizerBase`): the BERT uncased tokenizer of the text tower (required).
        max_length (`int`, defaults to 64): default token length (padding and truncation), saved with the processor.
    """

    def __init__(self, image_processor=None, tokenizer=None, max_length: int = DEFAULT_MAX_LENGTH, **kwargs):
        if image_processor is None:
            image_processor = WVLPImageProcessor()
        if tokenizer is None:
            raise ValueError(
                "WVLPProcessor needs a tokenizer: pass the BERT tokenizer of the text tower "
                "(modeling_wvlp.pretrained_assets.build_default_processor() builds the default one)"
            )
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"max_length={max_length!r} must be an int >= 2 ([CLS] and [SEP] take two tokens)")
        self.max_length = max_length
        super().__init__(image_processor, tokenizer, **kwargs)

    def __call__(
        self,
        images=None,
        text: str | list[str] | None = None,
        padding: bool | str = "max_length",
        truncation: bool | str = True,
        max_length: int | None = None,
        return_tensors: str | None = "pt",
        **kwargs,
    ) -> BatchFeature:
        """
        Tokenises `text` (a caption or a list of captions) and/or preprocesses `images` (anything
        `WVLPImageProcessor` takes). Keyword arguments named like the image processor's parameters (`size`,
        `resample`, `do_normalize`, ...) go to it; all others go to the tokenizer. `token_type_ids` are only
        returned when asked for with `return_token_type_ids=True`. Images and captions are not paired here, so
        their counts may differ (e.g. one image against many prompts).
        """
        if images is None and text is None:
            raise ValueError("WVLPProcessor needs images, text or both; got neither")
        image_kwarg_names = self.image_processor.valid_kwargs.__annotations__
        image_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in image_kwarg_names}
        data = {}
        if text is not None:
            texts = [text] if isinstance(text, str) else text
            if not isinstance(texts, (list, tuple)) or not texts:
                raise ValueError(f"text must be a non-empty string or a non-empty list of strings, got {text!r}")
            for index, caption in enumerate(texts):
                if not isinstance(caption, str):
                    raise ValueError(f"text {index} is a {type(caption).__name__}, not a string")
                if not caption.strip():
                    raise ValueError(f"text {index} is an empty string")
            kwargs.setdefault("return_token_type_ids", False)
            encoding = self.tokenizer(
                list(texts),
                padding=padding,
                truncation=truncation,
                max_length=self.max_length if max_length is None else max_length,
                return_tensors=return_tensors,
                **kwargs,
            )
            data.update(encoding)
        if images is not None:
            data.update(self.image_processor(images, return_tensors=return_tensors, **image_kwargs))
        return BatchFeature(data=data)

    @classmethod
    def _get_arguments_from_pretrained(cls, pretrained_model_name_or_path, processor_dict=None, **kwargs):
        # The base class loads the image processor through AutoImageProcessor, which sees the `auto_map` saved with
        # it and asks for trust_remote_code even in `WVLPProcessor.from_pretrained`, and under remote code imports a
        # second copy of image_processing_wvlp. This very module's class is the one to use in both cases.
        subfolder = kwargs.pop("subfolder", "")
        image_processor = WVLPImageProcessor.from_pretrained(
            pretrained_model_name_or_path, subfolder=subfolder, **kwargs
        )
        _check_tokenizer_files(pretrained_model_name_or_path, subfolder=subfolder, **kwargs)
        tokenizer = cls._load_tokenizer_from_pretrained(
            "tokenizer", pretrained_model_name_or_path, subfolder=subfolder, **kwargs
        )
        return [image_processor, tokenizer]

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values"]


def register_processor_auto_classes() -> None:
    """Registers the image processor and processor so that `save_pretrained` writes their code and `auto_map`."""
    WVLPImageProcessor.register_for_auto_class("AutoImageProcessor")
    WVLPProcessor.register_for_auto_class("AutoProcessor")


__all__ = ["WVLPProcessor", "register_processor_auto_classes"]

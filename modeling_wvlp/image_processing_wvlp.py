"""Image processor of WVLP: any image (PIL, numpy, torch, file path) -> normalised square RGB float32 pixels.

This file is shipped next to saved models for `trust_remote_code` loading, so it imports only numpy, PIL, torch
and transformers (and nothing package-absolute from `modeling_wvlp`).

Every input is first turned into 8-bit RGB (or grey, replicated after the resize): alpha is composited onto white,
16/32-bit integers are scaled from the full scale of their actual bit depth down to 8 bits (never clipped at 255 like
PIL's own `convert("L")` does), floats in [0, 1] are rounded to 0..255. Each image is then resized with PIL once, to
a `size` x `size` square (no crop: product photos are shown whole), and the uint8 batch is rescaled and normalised
at once in torch. Funnelling everything through the same 8-bit PIL resize makes a 16-bit or float image give exactly
the output of its 8-bit version (PIL's 8-bit resize clips between its two passes, so a float resize would not).
"""

import os
from typing import Any, TypedDict

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps
from transformers.image_processing_base import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

# EfficientNet-Lite was trained on inputs scaled to [-1, 1]: (x / 255 - 0.5) / 0.5.
EFFICIENTNET_LITE_MEAN = (0.5, 0.5, 0.5)
EFFICIENTNET_LITE_STD = (0.5, 0.5, 0.5)

# Float images may overshoot [0, 1] by this much (float rounding in upstream arithmetic); they are then clipped.
FLOAT_RANGE_TOLERANCE = 1e-5

_RESAMPLE_NAMES = {int(r): r.name for r in Image.Resampling}
# PIL modes whose samples do not fit in 8 bits: decoded as numpy arrays and scaled down to 8 bits.
_HIGH_DEPTH_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")
# PIL modes with premultiplied alpha: PIL cannot convert "La" at all, so both are composited in numpy.
_PREMULTIPLIED_MODES = ("RGBa", "La")
_ALPHA_MODES = ("RGBA", "LA", "PA")
_RETURN_TENSORS = ("pt", "np", None)


class WVLPImageProcessorKwargs(TypedDict, total=False):
    """The parameters of `WVLPImageProcessor` (what `from_pretrained(..., **kwargs)` may override)."""

    size: int
    resample: int
    do_rescale: bool
    rescale_factor: float
    do_normalize: bool
    image_mean: list[float]
    image_std: list[float]
    do_convert_rgb: bool


def _check_size(size: Any) -> int:
    if isinstance(size, dict):  # accept the usual transformers size dicts when they describe a square
        if "height" in size and "width" in size and size["height"] == size["width"]:
            size = size["height"]
        elif set(size) == {"shortest_edge"}:
            size = size["shortest_edge"]
        else:
            raise ValueError(f"size={size!r}: WVLPImageProcessor makes square images; give one int")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size={size!r} must be a positive int (the side of the square output)")
    return int(size)


def _check_resample(resample: Any) -> int:
    valid = isinstance(resample, (int, np.integer)) and not isinstance(resample, bool)
    if not valid or int(resample) not in _RESAMPLE_NAMES:
        raise ValueError(
            f"resample={resample!r} must be a PIL resampling filter: "
            + ", ".join(f"{v}={k}" for k, v in sorted(_RESAMPLE_NAMES.items()))
        )
    return int(resample)


def _check_channel_stats(name: str, values: Any, positive: bool) -> list[float]:
    if isinstance(values, (int, float)):
        values = [values] * 3
    values = [float(v) for v in values]
    if len(values) != 3:
        raise ValueError(f"{name}={values!r} must have 3 values (R, G, B)")
    if not all(np.isfinite(values)) or (positive and min(values) <= 0):
        raise ValueError(f"{name}={values!r} must be finite{' and > 0' if positive else ''}")
    return values


def _describe(image: Any) -> str:
    """A short description of an input for error messages."""
    if isinstance(image, Image.Image):
        return f"PIL image, mode {image.mode!r}, size {image.width}x{image.height}"
    if isinstance(image, np.ndarray):
        return f"numpy array, shape {tuple(image.shape)}, dtype {image.dtype}"
    if isinstance(image, torch.Tensor):
        return f"torch tensor, shape {tuple(image.shape)}, dtype {image.dtype}"
    if isinstance(image, (str, os.PathLike)):
        return f"file {os.fspath(image)!r}"
    return f"object of type {type(image).__name__}"


def _upright(image: Image.Image) -> Image.Image:
    """`image` turned by its EXIF orientation, as `transformers.image_utils.load_image` does (itself when upright)."""
    # exif_transpose copies even an upright image: read the tag first so that most inputs are not copied.
    if image.getexif().get(ExifTags.Base.Orientation, 1) == 1:
        return image
    return ImageOps.exif_transpose(image)


def _composite_on_white(rgba: Image.Image) -> Image.Image:
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


class WVLPImageProcessor(BaseImageProcessor):
    r"""
    Turns images into the `pixel_values` of a WVLP model: RGB, `size` x `size`, rescaled and normalised.

    Accepted images (one, or a list/tuple of them):

    - PIL images of any mode: RGB, L, 1, P (with or without transparency), LA/PA/RGBA (alpha composited onto
      white), RGBa/La (premultiplied alpha), CMYK, YCbCr, HSV, LAB, I;16/I;16B/I;16L/I;16N (16 bits: `v >> 8`),
      I (32-bit ints: content up to 255 is read as 8-bit, up to 65535 as 16-bit, above as 31-bit; negative values
      are refused) and F (floats in [0, 1]).
    - numpy arrays HxW, HxWx1, HxWx2 (grey + alpha), HxWx3 or HxWx4 (RGBA), channels last, of dtype uint8,
      uint16 (`v >> 8`), bool or float (values in [0, 1], rounded to 0..255).
    - torch tensors HxW or CxHxW (C in 1, 2, 3, 4), channels first, with the same dtypes (float16/bfloat16 too).
    - a file path (`str` or `pathlib.Path`), opened with PIL.

    PIL images and files are first turned upright by their EXIF orientation, like `transformers.image_utils.load_image`.

    A bad image raises a `ValueError` that names its index in the batch and what is wrong with it.

    Args:
        size (`int`, defaults to 224): side of the square output; images are resized without cropping.
        resample (`int`, defaults to `PIL.Image.Resampling.BICUBIC`): PIL filter used for the resize.
        do_rescale (`bool`, defaults to `True`): multiply the 0..255 values by `rescale_factor`.
        rescale_factor (`float`, defaults to 1/255).
        do_normalize (`bool`, defaults to `True`): `(x - image_mean) / image_std` per channel.
        image_mean, image_std (3 floats, default 0.5 each): EfficientNet-Lite convention, giving values in [-1, 1].
        do_convert_rgb (`bool`, defaults to `True`): convert non-RGB images; when `False` such images are refused.
    """

    model_input_names = ["pixel_values"]
    valid_kwargs = WVLPImageProcessorKwargs

    def __init__(
        self,
        size: int = 224,
        resample: int = Image.Resampling.BICUBIC,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        do_convert_rgb: bool = True,
        **kwargs,
    ):
        kwargs.pop("image_processor_type", None)  # written by to_dict; the class itself is the type
        super().__init__(**kwargs)
        self.size = _check_size(size)
        self.resample = _check_resample(resample)
        self.do_rescale = bool(do_rescale)
        self.rescale_factor = float(rescale_factor)
        self.do_normalize = bool(do_normalize)
        self.image_mean = _check_channel_stats(
            "image_mean", EFFICIENTNET_LITE_MEAN if image_mean is None else image_mean, positive=False
        )
        self.image_std = _check_channel_stats(
            "image_std", EFFICIENTNET_LITE_STD if image_std is None else image_std, positive=True
        )
        self.do_convert_rgb = bool(do_convert_rgb)

    def __call__(self, images, **kwargs) -> BatchFeature:
        return self.preprocess(images, **kwargs)

    def preprocess(
        self,
        images,
        size: int | None = None,
        resample: int | None = None,
        do_rescale: bool | None = None,
        rescale_factor: float | None = None,
        do_normalize: bool | None = None,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        do_convert_rgb: bool | None = None,
        return_tensors: str | None = "pt",
        **kwargs,
    ) -> BatchFeature:
        """
        Preprocesses one image or a list of images into `BatchFeature({"pixel_values": (B, 3, size, size)})`.

        Every argument left as `None` takes the processor's own value. `return_tensors`: "pt" (default) gives a
        float32 tensor, "np" a float32 array, `None` a list of (3, size, size) float32 arrays.
        """
        if kwargs:
            raise TypeError(f"WVLPImageProcessor got unexpected arguments: {sorted(kwargs)}")
        if return_tensors not in _RETURN_TENSORS:
            raise ValueError(f"return_tensors={return_tensors!r} must be one of {_RETURN_TENSORS}")
        size = self.size if size is None else _check_size(size)
        resample = self.resample if resample is None else _check_resample(resample)
        do_rescale = self.do_rescale if do_rescale is None else do_rescale
        rescale_factor = self.rescale_factor if rescale_factor is None else float(rescale_factor)
        do_normalize = self.do_normalize if do_normalize is None else do_normalize
        mean = self.image_mean if image_mean is None else _check_channel_stats("image_mean", image_mean, False)
        std = self.image_std if image_std is None else _check_channel_stats("image_std", image_std, True)
        do_convert_rgb = self.do_convert_rgb if do_convert_rgb is None else do_convert_rgb

        if images is None:
            raise ValueError("no images given (images=None)")
        batch = list(images) if isinstance(images, (list, tuple)) else [images]
        if not batch:
            raise ValueError("no images given (empty list)")

        stacked = np.empty((len(batch), 3, size, size), dtype=np.uint8)  # channels first, filled image by image
        for index, image in enumerate(batch):
            resized = self._resize(self._to_rgb(image, index, do_convert_rgb), index, image, size, resample)
            stacked[index] = resized.transpose(2, 0, 1) if resized.ndim == 3 else resized  # grey: broadcast to RGB

        pixel_values = torch.from_numpy(stacked).to(torch.float32)
        scale = torch.ones(3, dtype=torch.float64)
        shift = torch.zeros(3, dtype=torch.float64)
        if do_rescale:
            scale *= rescale_factor
        if do_normalize:
            std_t = torch.tensor(std, dtype=torch.float64)
            scale, shift = scale / std_t, -torch.tensor(mean, dtype=torch.float64) / std_t
        if do_rescale or do_normalize:  # one fused multiply-add over the batch: x * scale + shift
            pixel_values.mul_(scale.float().view(1, 3, 1, 1)).add_(shift.float().view(1, 3, 1, 1))

        if return_tensors == "np":
            pixel_values = pixel_values.numpy()
        elif return_tensors is None:
            pixel_values = list(pixel_values.numpy())
        return BatchFeature(data={"pixel_values": pixel_values})

    # ----------------------------------------------------------------------------------------------------------
    # Conversion of one input to an 8-bit PIL image of mode "RGB" or "L" (grey is replicated after the resize).

    def _to_rgb(self, image: Any, index: int, do_convert_rgb: bool) -> Image.Image:
        where = f"image {index} ({_describe(image)})"
        if isinstance(image, (str, os.PathLike)):
            return self._from_pil(_upright(self._open(image, where)), where, do_convert_rgb)
        if isinstance(image, Image.Image):
            try:
                return self._from_pil(_upright(image), where, do_convert_rgb)
            except OSError as err:  # lazily loaded PIL images decode here (truncated data, ...)
                raise ValueError(f"{where}: cannot decode the image: {err}") from err
        if isinstance(image, np.ndarray):
            return self._from_array(image, where, do_convert_rgb)
        if isinstance(image, torch.Tensor):
            return self._from_array(self._tensor_to_array(image, where), where, do_convert_rgb)
        raise ValueError(
            f"{where}: unsupported type; give a PIL image, a numpy array, a torch tensor or a file path"
            + ("; a batch is a flat list of images" if isinstance(image, (list, tuple)) else "")
        )

    @staticmethod
    def _open(path: "str | os.PathLike", where: str) -> Image.Image:
        try:
            with Image.open(path) as opened:
                opened.load()  # decode now, so that unreadable or truncated files fail here
                return opened.copy()  # detached from the file, which the `with` closes
        except Exception as err:  # OSError, UnidentifiedImageError, DecompressionBombError, decoder errors
            raise ValueError(f"{where}: cannot read the image file {os.fspath(path)!r}: {err}") from err

    @staticmethod
    def _from_pil(image: Image.Image, where: str, do_convert_rgb: bool) -> Image.Image:
        if image.width == 0 or image.height == 0:
            raise ValueError(f"{where}: zero-size image")
        mode = image.mode
        transparent = (
            mode in _ALPHA_MODES
            or mode in _PREMULTIPLIED_MODES
            or "transparency" in image.info  # P with a transparent palette index, L/RGB with a colour key
        )
        if mode == "RGB" and not transparent:
            return image
        if not do_convert_rgb:
            raise ValueError(f"{where}: mode {mode!r} is not RGB and do_convert_rgb=False")
        if mode in _HIGH_DEPTH_MODES:
            return WVLPImageProcessor._from_array(np.asarray(image), where, do_convert_rgb, pil_mode=mode)
        if mode in _PREMULTIPLIED_MODES:
            # Premultiplied colour c*a composited onto white: c*a + 255*(1 - a) = premultiplied + 255 - alpha.
            array = np.asarray(image).astype(np.int16)
            composited = np.clip(array[..., :-1] + (255 - array[..., -1:]), 0, 255).astype(np.uint8)
            return Image.fromarray(composited[..., 0] if mode == "La" else composited)
        if transparent:  # RGBA, LA, PA, and P/L/RGB images with a transparency key
            return _composite_on_white(image if mode == "RGBA" else image.convert("RGBA"))
        if mode == "L":  # resized as one channel, replicated to RGB afterwards
            return image
        if mode == "1":
            return image.convert("L")
        try:
            return image.convert("RGB")  # P, CMYK, YCbCr, HSV, LAB, RGBX, ...
        except ValueError as err:
            raise ValueError(f"{where}: PIL cannot convert mode {mode!r} to RGB: {err}") from err

    @staticmethod
    def _tensor_to_array(tensor: torch.Tensor, where: str) -> np.ndarray:
        if tensor.ndim == 3:
            if tensor.shape[0] not in (1, 2, 3, 4):
                hint = " (it looks channels-last; tensors must be CxHxW)" if tensor.shape[-1] in (1, 3, 4) else ""
                raise ValueError(f"{where}: expected a CxHxW tensor with 1, 3 or 4 channels first{hint}")
            tensor = tensor.permute(1, 2, 0)
        elif tensor.ndim != 2:
            raise ValueError(
                f"{where}: expected a 2-D (HxW) or 3-D (CxHxW) tensor, got {tensor.ndim} dims; "
                "give a batch as a list of images"
            )
        tensor = tensor.detach().cpu()
        if tensor.dtype in (torch.float16, torch.bfloat16):
            tensor = tensor.float()
        if tensor.dtype not in (torch.bool, torch.uint8, torch.uint16, torch.float32, torch.float64):
            raise ValueError(f"{where}: unsupported dtype {tensor.dtype}; use uint8, uint16, bool or float in [0, 1]")
        return tensor.numpy()

    @staticmethod
    def _from_array(array: np.ndarray, where: str, do_convert_rgb: bool, pil_mode: str | None = None) -> Image.Image:
        if array.ndim == 2:
            array = array[..., None]
        elif array.ndim == 3:
            if array.shape[-1] not in (1, 2, 3, 4):
                hint = " (it looks channels-first; numpy images must be HxWxC)" if array.shape[0] in (1, 3, 4) else ""
                raise ValueError(f"{where}: expected 1, 3 or 4 channels in the last dimension{hint}")
        else:
            raise ValueError(
                f"{where}: expected a 2-D (HxW) or 3-D (HxWxC) array, got {array.ndim} dims; "
                "give a batch as a list of images"
            )
        if array.shape[0] == 0 or array.shape[1] == 0:
            raise ValueError(f"{where}: zero-size image")
        channels = array.shape[-1]
        if channels != 3 and not do_convert_rgb:
            raise ValueError(f"{where}: {channels} channel(s) is not RGB and do_convert_rgb=False")

        kind, itemsize = array.dtype.kind, array.dtype.itemsize
        if kind == "b":
            array = array.astype(np.uint8) * np.uint8(255)
        elif kind == "u" and itemsize == 1:
            pass
        elif kind == "u" and itemsize == 2:  # 16 bits -> 8 bits: the high byte (65535 -> 255)
            array = (array >> 8).astype(np.uint8)
        elif kind == "i" and pil_mode == "I":  # PIL's 32-bit integer mode: scale by the bit depth of the content
            low, high = int(array.min()), int(array.max())
            if low < 0:
                raise ValueError(f"{where}: negative pixel values (min {low}) in a 32-bit integer image")
            shift = 0 if high <= 255 else 8 if high <= 65535 else 23  # 8-, 16- or 31-bit content
            array = (array >> shift).astype(np.uint8)
        elif kind == "f":
            if not np.isfinite(array).all():
                raise ValueError(f"{where}: non-finite values (nan or inf)")
            low, high = float(array.min()), float(array.max())
            if low < -FLOAT_RANGE_TOLERANCE or high > 1 + FLOAT_RANGE_TOLERANCE:
                raise ValueError(
                    f"{where}: float values must be in [0, 1], got min {low:.6g}, max {high:.6g} "
                    "(give uint8 for 0..255 data)"
                )
            array = np.rint(np.clip(array.astype(np.float32, copy=False), 0.0, 1.0) * np.float32(255)).astype(np.uint8)
        else:
            raise ValueError(f"{where}: unsupported dtype {array.dtype}; use uint8, uint16, bool or float in [0, 1]")
        # 1 channel -> L, 2 -> LA, 3 -> RGB, 4 -> RGBA; alpha is then composited onto white like any PIL image.
        image = Image.fromarray(np.ascontiguousarray(array[..., 0] if channels == 1 else array))
        return WVLPImageProcessor._from_pil(image, where, do_convert_rgb)

    # ----------------------------------------------------------------------------------------------------------

    @staticmethod
    def _resize(prepared: Image.Image, index: int, image: Any, size: int, resample: int) -> np.ndarray:
        """The one PIL resize of an image: uint8 (S, S, 3) for RGB, (S, S) for grey."""
        try:
            return np.asarray(prepared.resize((size, size), resample=resample))
        except (OSError, ValueError) as err:
            raise ValueError(f"image {index} ({_describe(image)}): cannot resize: {err}") from err


__all__ = ["WVLPImageProcessor"]

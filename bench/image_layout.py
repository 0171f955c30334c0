"""EfficientNet-Lite tower speed in the layout it runs in (NHWC, channels_last) vs the same layers on NCHW input.

`WVLPEfficientNetLiteModel.extract_features` converts its input to channels_last; this measures why, side by side in
one run: a training pass (forward + backward of the pooled output) and an inference forward, at the demo's batch and
image size, median of `--steps` interleaved repeats after one warm-up. Only the ratios are comparable across runs.

Usage: python bench/image_layout.py [--batch-size 64] [--image-size 64] [--steps 10]
"""

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from wvlp.modeling.configuration_wvlp import WVLPEfficientNetLiteConfig
from wvlp.modeling.modeling_efficientnet_lite import WVLPEfficientNetLiteModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_step import time_interleaved  # noqa: E402


def nchw_features(model: WVLPEfficientNetLiteModel, pixel_values: torch.Tensor) -> torch.Tensor:
    """`extract_features` without the layout conversion: every conv then runs NCHW."""
    hidden_states = model.stem(pixel_values.contiguous())
    for block in model.blocks:
        hidden_states = block(hidden_states)
    return model.head(hidden_states)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_flush_denormal(True)  # as train/run.py
    model = WVLPEfficientNetLiteModel(WVLPEfficientNetLiteConfig(variant="lite0", image_size=args.image_size))
    pixel_values = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    features = {"NHWC": model.extract_features, "NCHW": lambda x: nchw_features(model, x)}

    def train_pass(extract: Callable) -> Callable[[], None]:
        def run() -> None:
            model.train().zero_grad(set_to_none=True)
            extract(pixel_values).mean(dim=(2, 3)).sum().backward()

        return run

    def inference(extract: Callable) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode():
                extract(pixel_values.clone())

        return run

    with torch.no_grad():
        model.eval()
        gap = (features["NHWC"](pixel_values) - features["NCHW"](pixel_values)).abs().max().item()
    seconds = time_interleaved(
        {
            f"{kind} {layout}": make(fn)
            for kind, make in (("train", train_pass), ("infer", inference))
            for layout, fn in features.items()
        },
        args.steps,
        warmup=1,
    )
    print(
        f"EfficientNet-Lite0, batch {args.batch_size}, {args.image_size} px, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}; median of {args.steps} interleaved repeats. Largest feature difference "
        f"NHWC vs NCHW (eval): {gap:.2e}\n"
    )
    print("| pass | NCHW s | NHWC s | NCHW / NHWC |\n|---|---:|---:|---:|")
    for kind in ("train", "infer"):
        nchw, nhwc = seconds[f"{kind} NCHW"], seconds[f"{kind} NHWC"]
        print(f"| {kind} (batch {args.batch_size}) | {nchw:.3f} | {nhwc:.3f} | {nchw / nhwc:.2f}x |")


if __name__ == "__main__":
    main()

"""EfficientNet-Lite (lite0-lite4) image tower, numerically matching the TF/lukemelas reference, with readable names."""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling

from .configuration_wvlp import EFFICIENTNET_LITE_VARIANTS, WVLPEfficientNetLiteConfig

# EfficientNet-B0 stages as (repeats, kernel size, stride, expand ratio, in channels, out channels).
# Lite uses the same table without squeeze-excite; it is scaled by the variant's width/depth multipliers.
EFFICIENTNET_B0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_CHANNELS = 32  # Lite keeps the stem (and the head) unscaled by width.
CHANNEL_DIVISOR = 8


@dataclass(frozen=True)
class MBConvSpec:
    """Shape of one MBConv block."""

    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    expand_ratio: int


def round_channels(channels: int, width_multiplier: float, divisor: int = CHANNEL_DIVISOR) -> int:
    """Scales a channel count by the width multiplier, rounded to a multiple of `divisor` as in the reference."""
    scaled = channels * width_multiplier
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:  # never round down by more than 10%
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth_multiplier: float) -> int:
    """Scales a stage's number of blocks by the depth multiplier."""
    return int(math.ceil(depth_multiplier * repeats))


def efficientnet_lite_block_specs(variant: str) -> list[MBConvSpec]:
    """The MBConv blocks of an EfficientNet-Lite variant, in order."""
    width, depth, _, _ = EFFICIENTNET_LITE_VARIANTS[variant]
    last_stage = len(EFFICIENTNET_B0_STAGES) - 1
    specs = []
    for stage, (repeats, kernel_size, stride, expand_ratio, in_channels, out_channels) in enumerate(
        EFFICIENTNET_B0_STAGES
    ):
        # Lite fixes the stem, so the first stage reads the unscaled stem width; the first and last stages
        # are also not repeated more with depth (efficientnet_lite_builder.py).
        in_channels = STEM_CHANNELS if stage == 0 else round_channels(in_channels, width)
        out_channels = round_channels(out_channels, width)
        if stage not in (0, last_stage):
            repeats = round_repeats(repeats, depth)
        for index in range(repeats):
            specs.append(
                MBConvSpec(
                    in_channels=in_channels if index == 0 else out_channels,
                    out_channels=out_channels,
                    kernel_size=kernel_size,
                    stride=stride if index == 0 else 1,
                    expand_ratio=expand_ratio,
                )
            )
    return specs


def tf_same_padding(size: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of TensorFlow "SAME": output size ceil(size / stride), any odd pixel goes after."""
    output_size = math.ceil(size / stride)
    total = max((output_size - 1) * stride + kernel_size - size, 0)
    return total // 2, total - total // 2


def drop_connect(hidden_states: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Drops whole residual branches per sample (stochastic depth), rescaling the kept ones."""
    if not training or rate == 0.0:
        return hidden_states
    keep_prob = 1.0 - rate
    shape = (hidden_states.shape[0],) + (1,) * (hidden_states.ndim - 1)
    mask = torch.floor(keep_prob + torch.rand(shape, dtype=hidden_states.dtype, device=hidden_states.device))
    return hidden_states / keep_prob * mask


class EfficientNetLiteConvLayer(nn.Module):
    """Conv2d with TensorFlow "SAME" padding -> BatchNorm2d -> ReLU6 (or no activation)."""

    def __init__(
        self,
        config: WVLPEfficientNetLiteConfig,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        activation: bool = True,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        # With stride 1 and an odd kernel "SAME" is symmetric, so the conv can pad itself; strided convs pad
        # asymmetrically (extra row/column at the bottom/right) depending on the input size, done in forward.
        padding = (kernel_size - 1) // 2 if stride == 1 else 0
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, groups=groups, bias=False
        )
        self.norm = nn.BatchNorm2d(out_channels, eps=config.batch_norm_eps, momentum=config.batch_norm_momentum)
        self.activation = nn.ReLU6() if activation else nn.Identity()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            top, bottom = tf_same_padding(hidden_states.shape[-2], self.kernel_size, self.stride)
            left, right = tf_same_padding(hidden_states.shape[-1], self.kernel_size, self.stride)
            hidden_states = F.pad(hidden_states, (left, right, top, bottom))
        return self.activation(self.norm(self.conv(hidden_states)))


class EfficientNetLiteMBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand -> depthwise conv -> 1x1 linear projection (+ drop-connect residual)."""

    def __init__(self, config: WVLPEfficientNetLiteConfig, spec: MBConvSpec, drop_connect_rate: float) -> None:
        super().__init__()
        expanded = spec.in_channels * spec.expand_ratio
        self.expand = (
            EfficientNetLiteConvLayer(config, spec.in_channels, expanded, kernel_size=1)
            if spec.expand_ratio != 1
            else nn.Identity()
        )
        self.depthwise = EfficientNetLiteConvLayer(
            config, expanded, expanded, kernel_size=spec.kernel_size, stride=spec.stride, groups=expanded
        )
        self.project = EfficientNetLiteConvLayer(config, expanded, spec.out_channels, kernel_size=1, activation=False)
        self.has_residual = spec.stride == 1 and spec.in_channels == spec.out_channels
        self.drop_connect_rate = drop_connect_rate

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        output = self.project(self.depthwise(self.expand(hidden_states)))
        if self.has_residual:
            output = drop_connect(output, self.drop_connect_rate, self.training) + hidden_states
        return output


class WVLPEfficientNetLiteModel(nn.Module):
    """EfficientNet-Lite tower: the head's feature map as a grid of `hidden_size`-d tokens plus their mean."""

    def __init__(self, config: WVLPEfficientNetLiteConfig) -> None:
        super().__init__()
        self.config = config
        specs = efficientnet_lite_block_specs(config.variant)
        self.stem = EfficientNetLiteConvLayer(config, config.num_channels, STEM_CHANNELS, kernel_size=3, stride=2)
        # The drop-connect rate grows linearly with depth, as in the reference.
        self.blocks = nn.ModuleList(
            EfficientNetLiteMBConvBlock(config, spec, config.drop_connect_rate * index / len(specs))
            for index, spec in enumerate(specs)
        )
        self.head = EfficientNetLiteConvLayer(config, specs[-1].out_channels, config.hidden_size, kernel_size=1)
        if config.num_labels_imagenet > 0:
            self.dropout = nn.Dropout(EFFICIENTNET_LITE_VARIANTS[config.variant][3])
            self.classifier = nn.Linear(config.hidden_size, config.num_labels_imagenet)
        else:
            self.dropout = None
            self.classifier = None

    def extract_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The head's feature map, (batch, hidden_size, height / 32, width / 32)."""
        # NHWC: CPU (oneDNN) depthwise convolutions run it ~1.3x faster per training step than NCHW, and cuDNN prefers it
        # under mixed precision (bench/model_step.py); each conv keeps the layout its input has.
        hidden_states = self.stem(pixel_values.contiguous(memory_format=torch.channels_last))
        for block in self.blocks:
            hidden_states = block(hidden_states)
        return self.head(hidden_states)

    def forward(self, pixel_values: torch.Tensor) -> BaseModelOutputWithPooling:
        """Grid tokens (batch, H' * W', hidden_size) in row-major order and their mean (batch, hidden_size)."""
        tokens = self.extract_features(pixel_values).flatten(2).transpose(1, 2)
        return BaseModelOutputWithPooling(last_hidden_state=tokens, pooler_output=tokens.mean(dim=1))

    def imagenet_logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """ImageNet logits of the pre-trained classifier (pool -> dropout -> linear), as the reference's forward."""
        if self.classifier is None:
            raise ValueError("imagenet_logits needs a classifier: build the tower with num_labels_imagenet > 0")
        return self.classifier(self.dropout(self(pixel_values).pooler_output))


def init_efficientnet_weights(module: nn.Module) -> None:
    """Initialises a Conv2d (Kaiming normal, fan-out) or BatchNorm2d (identity); other modules are left alone."""
    # transformers.initialization skips tensors already loaded from a checkpoint (`_is_hf_initialized`).
    if isinstance(module, nn.Conv2d):
        # Fan-out per group as in TF EfficientNet: torch's kaiming fan-out ignores groups, which would shrink a
        # depthwise kernel by sqrt(channels) and make activations vanish to denormals after a few blocks.
        out_channels, _, kernel_height, kernel_width = module.weight.shape
        fan_out = out_channels // module.groups * kernel_height * kernel_width
        init.normal_(module.weight, mean=0.0, std=math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        init.ones_(module.weight)
        init.zeros_(module.bias)
        init.zeros_(module.running_mean)
        init.ones_(module.running_var)
        init.zeros_(module.num_batches_tracked)


__all__ = ["WVLPEfficientNetLiteModel", "efficientnet_lite_block_specs", "init_efficientnet_weights"]

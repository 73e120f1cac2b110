"""Network architectures for the spine classifier: DenseNet-121 (the paper's), ResNet-18, a small fast CNN, and
the same small CNN made local (`patch_cnn`).

Torchvision backbones are built with `weights=None`: nothing is downloaded at run time. Optional initial weights
(e.g. ImageNet weights saved earlier) come from a local state-dict file and are loaded into the unmodified
torchvision model before its first convolution and head are adapted to our channels and classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

import dnnlib

ARCHITECTURES = ("small_cnn", "patch_cnn", "resnet18", "densenet121")
POOLS = {"avg": nn.AdaptiveAvgPool2d, "max": nn.AdaptiveMaxPool2d}
NORMS = ("batch", "group")
GROUP_NORM_GROUPS = 8  # groups of GroupNorm in SmallCNN (its widths are multiples of 8)
# Backbones that train faster with channels-last weights and activations (oneDNN's native layout on a CPU): per
# training step at 32x32, one thread, DenseNet-121 1.42x and ResNet-18 1.05x; the small CNNs gain nothing, so they
# keep the default layout (docs/PERFORMANCE.md). The layout changes only the order of float sums.
CHANNELS_LAST_ARCHITECTURES = frozenset({"resnet18", "densenet121"})


class SmallCNN(nn.Module):
    """Strided Conv-BN-ReLU blocks (each halves the resolution, doubles the width), global average pooling, linear.

    Sized to train on a few thousand 64x64 images in minutes on 2 CPU cores (strided convolutions instead of
    conv + max-pool cost about a quarter as much), and cheap enough to sit inside every generator step as the
    clinical loss; works at any input resolution. ``pool`` reduces the last feature map to one vector: its mean
    ("avg") or each feature's strongest response anywhere in the image ("max"). ``norm="group"`` swaps BatchNorm for
    GroupNorm, which normalises each image on its own: what DP-SGD needs (BatchNorm mixes the records of a batch, so
    a per-sample gradient would depend on other records; `spine.dp.judge`).
    """

    def __init__(
        self,
        in_channels: int,
        num_outputs: int,
        width: int = 16,
        num_blocks: int = 5,
        dropout: float = 0.1,
        pool: str = "avg",
        norm: str = "batch",
    ):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"small_cnn: pool must be one of {', '.join(POOLS)}, got {pool!r}")
        if norm not in NORMS:
            raise ValueError(f"small_cnn: norm must be one of {', '.join(NORMS)}, got {norm!r}")
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(num_blocks):
            out = width * 2**i
            layers += [
                nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(out) if norm == "batch" else nn.GroupNorm(min(GROUP_NORM_GROUPS, out), out),
                nn.ReLU(inplace=norm == "batch"),  # Opacus's backward hooks refuse in-place ops on a layer's output
            ]
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(POOLS[pool](1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels, num_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# `patch_cnn`: two blocks, so each position of the last feature map sees a 7x7 patch, and max pooling, so the image
# is judged by the strongest local evidence anywhere in it: a lesion detector. It cannot read an image-wide cue (a
# generator's darkening, bands or texture: docs/RESULTS.md E3), which is why a patch_cnn trained on synthetic images
# transfers to real ones better than small_cnn's whole-image view (section G).
PATCH_CNN = dict(num_blocks=2, pool="max")


def _adapt_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """A copy of `conv` taking `in_channels` inputs; RGB weights are summed to gray so pretrained filters keep
    their response to a gray image repeated over three channels."""
    if conv.in_channels == in_channels:
        return conv
    new = nn.Conv2d(
        in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None
    )
    with torch.no_grad():
        summed = conv.weight.sum(dim=1, keepdim=True)
        new.weight.copy_(summed.repeat(1, in_channels, 1, 1) / in_channels)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def _load_init_weights(model: nn.Module, path: str | Path) -> None:
    from training.serialization import load_weights_only

    try:
        state = load_weights_only(path, str(path), "a state dict")
    except dnnlib.UserError as exc:
        raise dnnlib.UserError(f"--init-weights: {exc}") from None
    if not isinstance(state, dict):
        raise dnnlib.UserError(f"--init-weights={path}: expected a state dict, got {type(state).__name__}")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise dnnlib.UserError(
            f"--init-weights={path}: does not match torchvision {type(model).__name__} "
            f"(missing {missing[:3]}..., unexpected {unexpected[:3]}...)"
        )


def training_memory_format(arch: str) -> torch.memory_format:
    """The layout `arch` trains in (`CHANNELS_LAST_ARCHITECTURES`)."""
    return torch.channels_last if arch in CHANNELS_LAST_ARCHITECTURES else torch.contiguous_format


def build_network(
    arch: str,
    in_channels: int,
    num_outputs: int,
    arch_kwargs: dict[str, Any] | None = None,
    init_weights: str | Path | None = None,
) -> nn.Module:
    """Build `arch` for `in_channels`-channel input and `num_outputs` logits.

    `init_weights` (torchvision backbones only) is a state dict of the stock 3-channel, 1000-class model.
    """
    arch_kwargs = dict(arch_kwargs or {})
    if arch in ("small_cnn", "patch_cnn"):
        if init_weights is not None:
            raise dnnlib.UserError(f"--init-weights applies to torchvision backbones only, not {arch}")
        defaults = PATCH_CNN if arch == "patch_cnn" else {}
        return SmallCNN(in_channels, num_outputs, **{**defaults, **arch_kwargs})
    if arch == "resnet18":
        model = torchvision.models.resnet18(weights=None, **arch_kwargs)
        if init_weights is not None:
            _load_init_weights(model, init_weights)
        model.conv1 = _adapt_first_conv(model.conv1, in_channels)
        model.fc = nn.Linear(model.fc.in_features, num_outputs)
        return model
    if arch == "densenet121":
        model = torchvision.models.densenet121(weights=None, **arch_kwargs)
        if init_weights is not None:
            _load_init_weights(model, init_weights)
        model.features.conv0 = _adapt_first_conv(model.features.conv0, in_channels)
        model.classifier = nn.Linear(model.classifier.in_features, num_outputs)
        return model
    raise ValueError(f"unknown classifier architecture {arch!r}; expected one of {', '.join(ARCHITECTURES)}")

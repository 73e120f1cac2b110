"""A classifier's features: the input of its last linear layer, differentiable in the network input.

Class feature matching (`spine.clinical.feature_match`) pulls generated images' features to the real classes' means,
and a DP release of those means (`spine.dp.class_features`) reads the private images' features: both need the same
features and the same clipping, so they live below both.
"""

from __future__ import annotations

import torch
from torch import nn

from spine.classifier.artifact import SpineClassifier


def _last_linear(net: nn.Module) -> nn.Linear:
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"the judge ({type(net).__name__}) has no linear layer whose input could serve as features")
    return linears[-1]


def judge_features(classifier: SpineClassifier, x: torch.Tensor) -> torch.Tensor:
    """Features [N, D] of network input x: the input of the judge's last linear layer (differentiable in x)."""
    captured: list[torch.Tensor] = []
    hook = _last_linear(classifier.net).register_forward_pre_hook(lambda _m, inputs: captured.append(inputs[0]))
    try:
        classifier(x)
    finally:
        hook.remove()
    return captured[0].flatten(1)


@torch.no_grad()
def image_features(
    classifier: SpineClassifier, images: torch.Tensor, clip: float | None = None, batch_size: int = 256
) -> torch.Tensor:
    """The judge's features [N, D] (float64, CPU) of uint8 images [N, C, H, W], in batches, clipped to L2 norm `clip`
    when given."""
    feats = torch.cat(
        [
            judge_features(classifier, classifier.preprocess_uint8(images[start : start + batch_size])).double().cpu()
            for start in range(0, len(images), batch_size)
        ]
    )
    return feats if clip is None else clip_features(feats, clip)


def clip_features(features: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Each row scaled to L2 norm at most `max_norm` (rows already within it unchanged; differentiable)."""
    norms = features.norm(dim=1, keepdim=True)
    return features * (max_norm / norms.clamp(min=max_norm))

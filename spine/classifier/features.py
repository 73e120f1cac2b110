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


def clip_features(features: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Each row scaled to L2 norm at most `max_norm` (rows already within it unchanged; differentiable)."""
    norms = features.norm(dim=1, keepdim=True)
    return features * (max_norm / norms.clamp(min=max_norm))

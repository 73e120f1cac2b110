"""The activation table of bias_act (official names, defaults and CUDA codes), shared by the reference and CUDA
implementations."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F


@dataclasses.dataclass(frozen=True)
class ActivationSpec:
    """One row of the activation table (names and defaults are those of the official op)."""

    func: Callable[[torch.Tensor, float], torch.Tensor]
    def_alpha: float
    def_gain: float
    cuda_idx: int
    ref: str  # which tensor the backward needs: 'x' (input), 'y' (output) or '' (none)
    has_2nd_grad: bool
    # act(z) * g == act(z * g) for g > 0: the gain can then be folded into the bias addition.
    homogeneous: bool = False
    # Overwrites its argument; used when autograd is off and the argument is our own temporary.
    func_: Callable[[torch.Tensor, float], torch.Tensor] | None = None
    # Slope below zero (given alpha) of a piecewise linear activation; its gradient is read off the output.
    neg_slope: Callable[[float], float] | None = None


def _swish(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return torch.sigmoid(x) * x


activation_funcs: dict[str, ActivationSpec] = {
    "linear": ActivationSpec(
        lambda x, alpha: x,
        0.0,
        1.0,
        1,
        "",
        False,
        homogeneous=True,
        func_=lambda x, alpha: x,
        neg_slope=lambda alpha: 1.0,
    ),
    "relu": ActivationSpec(
        lambda x, alpha: F.relu(x),
        0.0,
        math.sqrt(2),
        2,
        "y",
        False,
        homogeneous=True,
        func_=lambda x, alpha: F.relu_(x),
        neg_slope=lambda alpha: 0.0,
    ),
    "lrelu": ActivationSpec(
        lambda x, alpha: F.leaky_relu(x, alpha),
        0.2,
        math.sqrt(2),
        3,
        "y",
        False,
        homogeneous=True,
        func_=lambda x, alpha: F.leaky_relu_(x, alpha),
        neg_slope=lambda alpha: alpha,
    ),
    "tanh": ActivationSpec(lambda x, alpha: torch.tanh(x), 0.0, 1.0, 4, "y", True),
    "sigmoid": ActivationSpec(lambda x, alpha: torch.sigmoid(x), 0.0, 1.0, 5, "y", True),
    "elu": ActivationSpec(lambda x, alpha: F.elu(x), 0.0, 1.0, 6, "y", True),
    "selu": ActivationSpec(lambda x, alpha: F.selu(x), 0.0, 1.0, 7, "y", True),
    "softplus": ActivationSpec(lambda x, alpha: F.softplus(x), 0.0, 1.0, 8, "y", True),
    "swish": ActivationSpec(_swish, 0.0, math.sqrt(2), 9, "x", True),
}

"""bias_act on our CPU kernel (`bias_act_cpu.cpp`) for linear, relu and lrelu: one pass forward, one backward.

Same semantics as the reference path in `bias_act.py`: y = clamp(act(x + b) * gain, -clamp, clamp), zero gradient
where clamped. The backward is dx = dy * slope(y), read off the output (as the reference's `_PiecewiseLinearBiasAct`
does), and is linear in dy, so its own derivative is the same kernel: gradients of any order (R1's double backward)
follow. The reference path stays for everything else: other activations, other memory layouts, and torch.func
transforms (DP-SGD's per-sample gradients), which cannot look inside a compiled extension.
"""

from __future__ import annotations

import os
import types

import torch

from .. import custom_ops
from .activations import ActivationSpec

_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bias_act_cpu.cpp")
_DTYPES = (torch.float32, torch.bfloat16, torch.float64)


def load_plugin() -> types.ModuleType:
    """Builds (once per machine and CPU) and imports the CPU extension."""
    return custom_ops.get_cpu_plugin("spinegan_bias_act_cpu", sources=[_SOURCE])


def supports(
    x: torch.Tensor, b: torch.Tensor | None, dim: int, spec: ActivationSpec, alpha: float, gain: float
) -> bool:
    """Whether the kernel computes this call: a piecewise-linear activation, a supported dtype and layout, and no
    torch.func transform around it."""
    if spec.neg_slope is None or spec.neg_slope(alpha) < 0 or gain <= 0 or x.dtype not in _DTYPES:
        return False
    functorch = torch._C._functorch
    if functorch.is_functorch_wrapped_tensor(x) or (b is not None and functorch.is_functorch_wrapped_tensor(b)):
        return False
    if b is not None and (b.dtype != x.dtype or b.device != x.device):
        return False
    return x.is_contiguous() or (x.ndim == 4 and dim == 1 and x.is_contiguous(memory_format=torch.channels_last))


def bias_act_cpu(
    x: torch.Tensor, b: torch.Tensor | None, dim: int, neg_slope: float, gain: float, clamp: float | None
) -> torch.Tensor:
    """bias_act through the kernel, with the activation's negative slope; the caller checked `supports`."""
    return _BiasAct.apply(x, b, dim, neg_slope, gain, -1.0 if clamp is None else clamp)


class _BiasAct(torch.autograd.Function):
    """The forward pass; saves only the output, from which the backward reads the slope."""

    @staticmethod
    def forward(ctx, x, b, dim, neg_slope, gain, clamp):
        y = load_plugin().forward(x, b, dim, neg_slope, gain, clamp)
        ctx.save_for_backward(y)
        ctx.conf = (neg_slope, gain, clamp)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, dy):
        (y,) = ctx.saved_tensors
        dx = _SlopeTimes.apply(dy, y, *ctx.conf)
        db = None
        if ctx.needs_input_grad[1]:
            db = dx.sum([i for i in range(dx.ndim) if i != ctx.dim])
        return dx, db, None, None, None, None


class _SlopeTimes(torch.autograd.Function):
    """g -> g * slope(y): the backward of `_BiasAct`, and, being linear in g with y held constant, its own
    backward (the second derivative of a piecewise-linear map is 0)."""

    @staticmethod
    def forward(ctx, grad, y, neg_slope, gain, clamp):
        ctx.save_for_backward(y)
        ctx.conf = (neg_slope, gain, clamp)
        return load_plugin().slope_backward(grad, y, neg_slope, gain, clamp)

    @staticmethod
    def backward(ctx, grad_grad):
        (y,) = ctx.saved_tensors
        return _SlopeTimes.apply(grad_grad, y, *ctx.conf), None, None, None, None

"""bias_act on our CUDA kernel, wrapped in autograd Functions so that first and second derivatives work.

Same semantics as the reference path in `bias_act.py`: y = clamp(act(x + b) * gain, -clamp, clamp),
zero gradient where clamped. The backward saves the input x (not the output), so the clamp mask and
every derivative are recomputed exactly from x + b.
"""

from __future__ import annotations

import os
import types

import torch

from .. import custom_ops, misc
from .activations import activation_funcs

_SOURCE_DIR = os.path.dirname(os.path.abspath(__file__))
_FORWARD, _FIRST_GRAD, _SECOND_GRAD = 0, 1, 2


def load_plugin() -> types.ModuleType:
    """Builds (once per machine) and imports the bias_act extension."""
    return custom_ops.get_plugin(
        'spinegan_bias_act_plugin',
        sources=[os.path.join(_SOURCE_DIR, name) for name in ('bias_act.cpp', 'bias_act.cu')],
        headers=[os.path.join(_SOURCE_DIR, 'bias_act.h')])


class _Config:
    """The non-tensor arguments of one call, shared by the forward and both backward Functions."""

    def __init__(self, dim: int, act: str, alpha: float, gain: float, clamp: float | None):
        self.dim, self.alpha, self.gain = dim, alpha, gain
        self.code = activation_funcs[act].cuda_idx
        self.has_2nd_grad = activation_funcs[act].has_2nd_grad
        self.clamp = -1.0 if clamp is None else clamp  # The kernel reads a negative clamp as "none".

    def run(self, mode: int, x: torch.Tensor, b: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return load_plugin().bias_act(x, b, grad, mode, self.code, self.alpha, self.gain, self.clamp, self.dim)

    def reduce_to_bias(self, t: torch.Tensor) -> torch.Tensor:
        """Sums a per-element gradient over every dimension but the bias dimension."""
        return t.sum([i for i in range(t.ndim) if i != self.dim])


_EMPTY_CACHE: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}


def _empty(like: torch.Tensor) -> torch.Tensor:
    """A cached empty tensor standing for "no bias" / "no grad" in the kernel call."""
    key = (like.dtype, like.device)
    if key not in _EMPTY_CACHE:
        _EMPTY_CACHE[key] = torch.empty([0], dtype=like.dtype, device=like.device)
    return _EMPTY_CACHE[key]


class _BiasAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, b: torch.Tensor, cfg: _Config) -> torch.Tensor:
        ctx.cfg = cfg
        ctx.save_for_backward(x, b)
        return cfg.run(_FORWARD, x, b, _empty(x))

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        x, b = ctx.saved_tensors
        cfg = ctx.cfg
        dx = _BiasActGrad.apply(dy, x, b, cfg)
        db = cfg.reduce_to_bias(dx) if b.numel() > 0 and ctx.needs_input_grad[1] else None
        return dx, db, None


class _BiasActGrad(torch.autograd.Function):
    """dx = dy * act'(x + b) * gain * mask: linear in dy, so its own dy-gradient is itself."""

    @staticmethod
    def forward(ctx, dy: torch.Tensor, x: torch.Tensor, b: torch.Tensor, cfg: _Config) -> torch.Tensor:
        ctx.cfg = cfg
        ctx.save_for_backward(dy, x, b)
        return cfg.run(_FIRST_GRAD, x, b, dy)

    @staticmethod
    def backward(ctx, d_dx: torch.Tensor):
        dy, x, b = ctx.saved_tensors
        cfg = ctx.cfg
        d_dy = _BiasActGrad.apply(d_dx, x, b, cfg) if ctx.needs_input_grad[0] else None
        d_x = d_b = None
        if cfg.has_2nd_grad and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
            d_x = _BiasActSecondGrad.apply(d_dx * dy, x, b, cfg)
            d_b = cfg.reduce_to_bias(d_x) if b.numel() > 0 and ctx.needs_input_grad[2] else None
        # Activations without a second derivative (linear, relu, lrelu) have act'' = 0: None means zero.
        return d_dy, d_x, d_b, None


class _BiasActSecondGrad(torch.autograd.Function):
    """g * act''(x + b) * gain * mask; a third derivative is not provided and says so."""

    @staticmethod
    def forward(ctx, g: torch.Tensor, x: torch.Tensor, b: torch.Tensor, cfg: _Config) -> torch.Tensor:
        return cfg.run(_SECOND_GRAD, x, b, g)

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError("bias_act: the CUDA implementation has derivatives up to second order; "
                                  "use impl='ref' for higher orders")


def bias_act_cuda(x: torch.Tensor, b: torch.Tensor | None, dim: int, act: str, alpha: float, gain: float,
                  clamp: float | None) -> torch.Tensor:
    """bias_act on the CUDA kernel; arguments already resolved by `bias_act.bias_act` (alpha, gain floats)."""
    if act not in activation_funcs:
        raise ValueError(f'bias_act: unknown act {act!r}; expected one of {sorted(activation_funcs)}')
    if b is not None and b.dtype != x.dtype:  # Same promotion as the reference's x + b.
        dtype = torch.result_type(x, b)
        x, b = x.to(dtype), b.to(dtype)
    if not misc.is_dense(x):
        x = x.contiguous()
    b = _empty(x) if b is None else b.contiguous()
    return _BiasAct.apply(x, b, _Config(dim, act, float(alpha), float(gain), clamp))

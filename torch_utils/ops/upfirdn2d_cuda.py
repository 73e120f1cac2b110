"""upfirdn2d on our CUDA kernels, differentiable to any order.

Same semantics as the reference path in `upfirdn2d.py`. The gradient of an upfirdn2d pass w.r.t. its input
is again an upfirdn2d pass (up and down swapped, filter flip toggled, padding recomputed), so one autograd
Function whose backward calls itself gives gradients of every order. There is no gradient w.r.t. the filter.
"""

from __future__ import annotations

import math
import os
import types

import torch

from .. import custom_ops

_SOURCE_DIR = os.path.dirname(os.path.abspath(__file__))


def load_plugin() -> types.ModuleType:
    """Builds (once per machine) and imports the upfirdn2d extension."""
    return custom_ops.get_plugin(
        'spinegan_upfirdn2d_plugin',
        sources=[os.path.join(_SOURCE_DIR, name) for name in ('upfirdn2d.cpp', 'upfirdn2d.cu')],
        headers=[os.path.join(_SOURCE_DIR, 'upfirdn2d.h')])


class _Pass:
    """The non-tensor arguments of one 2-D pass: up/down as (x, y), padding as (x0, x1, y0, y1)."""

    def __init__(self, up: tuple[int, int], down: tuple[int, int], padding: tuple[int, int, int, int],
                 flip_filter: bool, gain: float):
        self.up, self.down, self.padding, self.flip_filter, self.gain = up, down, padding, flip_filter, gain

    def run(self, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return load_plugin().upfirdn2d(x, f, *self.up, *self.down, *self.padding, self.flip_filter, self.gain)

    def transposed(self, f: torch.Tensor, in_size: tuple[int, int], out_size: tuple[int, int]) -> '_Pass':
        """The pass that maps an output gradient of `out_size` (h, w) back to the input's `in_size`."""
        fh, fw = f.shape
        (ih, iw), (oh, ow) = in_size, out_size
        (ux, uy), (dx, dy), (px0, px1, py0, py1) = self.up, self.down, self.padding
        padding = (fw - px0 - 1, iw * ux - ow * dx + px0 - ux + 1,
                   fh - py0 - 1, ih * uy - oh * dy + py0 - uy + 1)
        return _Pass(self.down, self.up, padding, not self.flip_filter, self.gain)


class _Upfirdn2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, f: torch.Tensor, cfg: _Pass) -> torch.Tensor:
        y = cfg.run(x, f)
        ctx.save_for_backward(f)
        ctx.cfg = cfg
        ctx.sizes = (tuple(x.shape[2:]), tuple(y.shape[2:]))
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        (f,) = ctx.saved_tensors
        dx = None
        if ctx.needs_input_grad[0]:
            dx = _Upfirdn2d.apply(dy, f, ctx.cfg.transposed(f, *ctx.sizes))
        return dx, None, None


def _pair(value, name: str) -> tuple[int, int]:
    value = tuple(int(v) for v in value)
    if len(value) != 2 or min(value) < 1:
        raise ValueError(f'upfirdn2d: {name} must be (x, y) with both >= 1, got {value}')
    return value


def upfirdn2d_cuda(x: torch.Tensor, f: torch.Tensor | None, up: tuple[int, int], down: tuple[int, int],
                   padding: tuple[int, int, int, int], flip_filter: bool, gain: float) -> torch.Tensor:
    """upfirdn2d on the CUDA kernels: up/down as (x, y), padding as (x0, x1, y0, y1).

    A 1-D filter is separable: a horizontal then a vertical pass, each with gain sqrt(gain).
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f'upfirdn2d: x must be a 4-D [N, C, H, W] tensor, got {getattr(x, "shape", type(x))}')
    up, down = _pair(up, 'up'), _pair(down, 'down')
    padding = tuple(int(p) for p in padding)
    if len(padding) != 4:
        raise ValueError(f'upfirdn2d: padding must be (x0, x1, y0, y1), got {padding}')
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    if f.ndim not in (1, 2):
        raise ValueError(f'upfirdn2d: f must be 1-D (separable) or 2-D, got shape {tuple(f.shape)}')
    f = f.to(device=x.device, dtype=torch.float32)
    (ux, uy), (dx, dy), (px0, px1, py0, py1) = up, down, padding
    if f.ndim == 2:
        return _Upfirdn2d.apply(x, f, _Pass(up, down, padding, bool(flip_filter), float(gain)))
    root_gain = math.sqrt(gain)
    x = _Upfirdn2d.apply(x, f.unsqueeze(0), _Pass((ux, 1), (dx, 1), (px0, px1, 0, 0), bool(flip_filter), root_gain))
    return _Upfirdn2d.apply(x, f.unsqueeze(1), _Pass((1, uy), (1, dy), (0, 0, py0, py1), bool(flip_filter), root_gain))

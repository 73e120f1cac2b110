"""upfirdn2d on our CUDA kernels, differentiable to any order, as the torch.library op `spinegan::upfirdn2d`.

Same semantics as the reference path in `upfirdn2d.py`. The gradient of an upfirdn2d pass w.r.t. its input
is again an upfirdn2d pass (up and down swapped, filter flip toggled, padding recomputed), so the op's autograd
formula calls the op itself and gives gradients of every order. There is no gradient w.r.t. the filter.

The op has a CUDA kernel (the plugin), a CPU kernel (the reference path, so that `torch.library.opcheck` and the
gradient checks run on a CPU) and a fake implementation (shapes only, for torch.compile and the meta device). The
public `upfirdn2d` on a CPU calls the reference path directly, not this op: same results, no dispatch overhead.
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
        "spinegan_upfirdn2d_plugin",
        sources=[os.path.join(_SOURCE_DIR, name) for name in ("upfirdn2d.cpp", "upfirdn2d.cu")],
        headers=[os.path.join(_SOURCE_DIR, "upfirdn2d.h")],
    )


# ----------------------------------------------------------------------------------------------------
# The op: one 2-D pass, up/down as [x, y], padding as [x0, x1, y0, y1].


@torch.library.custom_op("spinegan::upfirdn2d", mutates_args=())
def upfirdn2d_op(
    x: torch.Tensor, f: torch.Tensor, up: list[int], down: list[int], padding: list[int], flip_filter: bool, gain: float
) -> torch.Tensor:
    """One upfirdn2d pass with a 2-D filter; this is the CPU kernel (the reference path)."""
    from .upfirdn2d_ref import _upfirdn2d_ref

    with torch.no_grad():
        y = _upfirdn2d_ref(x, f, tuple(up), tuple(down), tuple(padding), flip_filter, gain)
    return y.contiguous(memory_format=_memory_format(x))  # the plugin's layout, never a view


@upfirdn2d_op.register_kernel("cuda")
def _upfirdn2d_cuda_kernel(x, f, up, down, padding, flip_filter, gain):
    return load_plugin().upfirdn2d(x, f, *up, *down, *padding, flip_filter, gain)


@upfirdn2d_op.register_fake
def _upfirdn2d_fake(x, f, up, down, padding, flip_filter, gain):
    (ux, uy), (dx, dy), (px0, px1, py0, py1) = up, down, padding
    fh, fw = f.shape
    out_h = (x.shape[2] * uy + py0 + py1 - fh) // dy + 1
    out_w = (x.shape[3] * ux + px0 + px1 - fw) // dx + 1
    return torch.empty(
        [x.shape[0], x.shape[1], out_h, out_w], dtype=x.dtype, device=x.device, memory_format=_memory_format(x)
    )


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """What the plugin allocates: channels_last for a channels_last input, else contiguous."""
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def transposed_pass(
    f_shape: tuple[int, int],
    in_size: tuple[int, int],
    out_size: tuple[int, int],
    up: list[int],
    down: list[int],
    padding: list[int],
) -> tuple[list[int], list[int], list[int]]:
    """(up, down, padding) of the pass that maps an output gradient of `out_size` (h, w) back to `in_size`."""
    fh, fw = f_shape
    (ih, iw), (oh, ow) = in_size, out_size
    (ux, uy), (dx, dy), (px0, _, py0, _) = up, down, padding
    t_padding = [fw - px0 - 1, iw * ux - ow * dx + px0 - ux + 1, fh - py0 - 1, ih * uy - oh * dy + py0 - uy + 1]
    return list(down), list(up), t_padding


def _setup_context(ctx, inputs, output):
    x, f, up, down, padding, flip_filter, gain = inputs
    ctx.save_for_backward(f)
    ctx.conf = (up, down, padding, flip_filter, gain, tuple(x.shape[2:]), tuple(output.shape[2:]))


def _backward(ctx, dy):
    (f,) = ctx.saved_tensors
    up, down, padding, flip_filter, gain, in_size, out_size = ctx.conf
    dx = None
    if ctx.needs_input_grad[0]:
        t_up, t_down, t_padding = transposed_pass(tuple(f.shape), in_size, out_size, up, down, padding)
        dx = upfirdn2d_op(dy, f, t_up, t_down, t_padding, not flip_filter, gain)
    return dx, None, None, None, None, None, None


upfirdn2d_op.register_autograd(_backward, setup_context=_setup_context)


def _pair(value, name: str) -> tuple[int, int]:
    value = tuple(int(v) for v in value)
    if len(value) != 2 or min(value) < 1:
        raise ValueError(f"upfirdn2d: {name} must be (x, y) with both >= 1, got {value}")
    return value


def upfirdn2d_cuda(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: tuple[int, int],
    down: tuple[int, int],
    padding: tuple[int, int, int, int],
    flip_filter: bool,
    gain: float,
) -> torch.Tensor:
    """upfirdn2d on the CUDA kernels: up/down as (x, y), padding as (x0, x1, y0, y1).

    A 1-D filter is separable: a horizontal then a vertical pass, each with gain sqrt(gain).
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"upfirdn2d: x must be a 4-D [N, C, H, W] tensor, got {getattr(x, 'shape', type(x))}")
    up, down = _pair(up, "up"), _pair(down, "down")
    padding = tuple(int(p) for p in padding)
    if len(padding) != 4:
        raise ValueError(f"upfirdn2d: padding must be (x0, x1, y0, y1), got {padding}")
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    if f.ndim not in (1, 2):
        raise ValueError(f"upfirdn2d: f must be 1-D (separable) or 2-D, got shape {tuple(f.shape)}")
    f = f.to(device=x.device, dtype=torch.float32)
    (ux, uy), (dx, dy), (px0, px1, py0, py1) = up, down, padding
    if f.ndim == 2:
        return upfirdn2d_op(x, f, [ux, uy], [dx, dy], [px0, px1, py0, py1], bool(flip_filter), float(gain))
    root_gain = math.sqrt(gain)
    x = upfirdn2d_op(x, f.unsqueeze(0), [ux, 1], [dx, 1], [px0, px1, 0, 0], bool(flip_filter), root_gain)
    return upfirdn2d_op(x, f.unsqueeze(1), [1, uy], [1, dy], [0, 0, py0, py1], bool(flip_filter), root_gain)

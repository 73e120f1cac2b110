"""upfirdn2d: upsample by zero insertion, pad, FIR-filter, downsample, per channel of an NCHW tensor.

Semantics (per channel, per axis): insert `up - 1` zeros after every sample, pad with zeros (a negative
pad crops), convolve with the filter `f` (a true convolution unless `flip_filter`; only the fully
overlapping outputs are kept), then keep every `down`-th sample. A 2-D filter is scaled by `gain`, a
separable (1-D) filter by sqrt(gain) per axis.

The reference path never materialises the zero-stuffed signal: upsampling is a strided transposed
convolution, downsampling a strided convolution, a separable filter two 1-D depthwise convolutions, and
padding is folded into the convolutions' own symmetric padding plus views wherever possible.
A CUDA kernel with the same semantics lives in `upfirdn2d_cuda.py` (chosen by `custom_ops.resolve_impl`).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .. import custom_ops

IntOrPair = int | Sequence[int]


# ----------------------------------------------------------------------------------------------------
# Filter setup and argument normalisation.

def setup_filter(f: object, device: torch.device = torch.device('cpu'), normalize: bool = True,
                 flip_filter: bool = False, gain: float = 1, separable: bool | None = None) -> torch.Tensor:
    """Turn a filter description (None, scalar, 1-D or 2-D array-like) into a float32 tensor for upfirdn2d.

    A 1-D filter stays separable only with >= 8 taps (or `separable=True`); otherwise it becomes its outer
    product. `normalize` scales it to sum 1; `gain` is spread as gain ** (ndim / 2) so that the 2-D
    response is always scaled by `gain`.
    """
    f = torch.as_tensor(1 if f is None else f, dtype=torch.float32)
    if f.ndim not in (0, 1, 2) or f.numel() == 0:
        raise ValueError(f'setup_filter: expected a non-empty scalar, 1-D or 2-D filter, got shape {tuple(f.shape)}')
    if f.ndim == 0:
        f = f.reshape(1)
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if separable and f.ndim != 1:
        raise ValueError(f'setup_filter: separable=True needs a 1-D filter, got shape {tuple(f.shape)}')
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


def _parse_scaling(scaling: IntOrPair, name: str) -> tuple[int, int]:
    """Return (x, y) from an int or an (x, y) pair; each must be >= 1."""
    sx, sy = (scaling, scaling) if isinstance(scaling, int) else tuple(scaling)
    if not (isinstance(sx, int) and isinstance(sy, int) and sx >= 1 and sy >= 1):
        raise ValueError(f'upfirdn2d: {name} must be an int >= 1 or a pair of them, got {scaling!r}')
    return sx, sy


def _parse_padding(padding: IntOrPair) -> tuple[int, int, int, int]:
    """Return (x0, x1, y0, y1) from an int, an (x, y) pair or an (x0, x1, y0, y1) quadruple."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    padding = tuple(int(p) for p in padding)
    if len(padding) == 2:
        return padding[0], padding[0], padding[1], padding[1]
    if len(padding) == 4:
        return padding
    raise ValueError(f'upfirdn2d: padding must be an int, (x, y) or (x0, x1, y0, y1), got {padding!r}')


def _filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """Return (width, height) of a filter as prepared by setup_filter (None means the identity)."""
    if f is None:
        return 1, 1
    if f.ndim not in (1, 2):
        raise ValueError(f'upfirdn2d: f must be 1-D (separable) or 2-D, got shape {tuple(f.shape)}')
    return f.shape[-1], f.shape[0]


# ----------------------------------------------------------------------------------------------------
# Public ops.

def upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, up: IntOrPair = 1, down: IntOrPair = 1,
              padding: IntOrPair = 0, flip_filter: bool = False, gain: float = 1,
              impl: str | None = None) -> torch.Tensor:
    """Upsample, pad, FIR-filter and downsample every channel of `x` [N, C, H, W] (see module docstring).

    `f` is a 1-D (separable) or 2-D filter from `setup_filter`, or None for the identity; `up`, `down` are
    ints or (x, y); `padding` is an int, (x, y) or (x0, x1, y0, y1) in upsampled pixels.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f'upfirdn2d: x must be a 4-D NCHW tensor, got {getattr(x, "shape", type(x).__name__)}')
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    _filter_size(f)
    up = _parse_scaling(up, 'up')
    down = _parse_scaling(down, 'down')
    padding = _parse_padding(padding)
    if custom_ops.resolve_impl('upfirdn2d', impl, x) == 'cuda':
        from .upfirdn2d_cuda import upfirdn2d_cuda
        return upfirdn2d_cuda(x, f, up, down, padding, flip_filter, gain)
    return _upfirdn2d_ref(x, f, up, down, padding, flip_filter, gain)


def filter2d(x: torch.Tensor, f: torch.Tensor | None, padding: IntOrPair = 0, flip_filter: bool = False,
             gain: float = 1, impl: str | None = None) -> torch.Tensor:
    """FIR-filter `x`, keeping its size (plus `padding`)."""
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _filter_size(f)
    padding = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=padding, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x: torch.Tensor, f: torch.Tensor | None, up: IntOrPair = 2, padding: IntOrPair = 0,
               flip_filter: bool = False, gain: float = 1, impl: str | None = None) -> torch.Tensor:
    """Upsample `x` by `up` with the interpolation filter `f`, output size = input size * up (plus `padding`)."""
    upx, upy = _parse_scaling(up, 'up')
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _filter_size(f)
    padding = [px0 + (fw + upx - 1) // 2, px1 + (fw - upx) // 2, py0 + (fh + upy - 1) // 2, py1 + (fh - upy) // 2]
    # Zero insertion keeps 1 / (upx * upy) of the energy; the gain restores it.
    return upfirdn2d(x, f, up=(upx, upy), padding=padding, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)


def downsample2d(x: torch.Tensor, f: torch.Tensor | None, down: IntOrPair = 2, padding: IntOrPair = 0,
                 flip_filter: bool = False, gain: float = 1, impl: str | None = None) -> torch.Tensor:
    """Low-pass filter `x` with `f` and downsample by `down`, output size = input size / down (plus `padding`)."""
    downx, downy = _parse_scaling(down, 'down')
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _filter_size(f)
    padding = [px0 + (fw - downx + 1) // 2, px1 + (fw - downx) // 2, py0 + (fh - downy + 1) // 2, py1 + (fh - downy) // 2]
    return upfirdn2d(x, f, down=(downx, downy), padding=padding, flip_filter=flip_filter, gain=gain, impl=impl)


# ----------------------------------------------------------------------------------------------------
# Reference implementation.

@dataclasses.dataclass(frozen=True)
class _AxisPlan:
    """How one spatial axis maps onto a (transposed) convolution with symmetric padding.

    The input is first cropped to [in_start, in_stop), then zero-padded by `pre_pad` on each side if the
    convolution's symmetric padding cannot express the request, convolved with padding `conv_pad`, and
    the result is finally cropped to [out_start, out_start + out_len * out_step) with step `out_step`.
    """
    in_start: int
    in_stop: int
    pre_pad: tuple[int, int]
    conv_pad: int
    out_start: int
    out_len: int
    out_step: int


def _plan_axis(size: int, taps: int, up: int, down: int, pad0: int, pad1: int, transposed: bool) -> _AxisPlan:
    """Plan one axis of upfirdn (see _AxisPlan); all arithmetic in (upsampled) sample units.

    `transposed` says whether the pass is a transposed convolution (both axes share one call, so an
    axis with up == 1 may still go through it).
    """
    full_len = size * up + pad0 + pad1 - taps + 1  # length before downsampling
    if full_len <= 0:
        raise ValueError(f'upfirdn2d: the filter ({taps} taps) is longer than the padded, upsampled input'
                         f' ({size} * {up} + {pad0} + {pad1} samples)')
    out_len = (full_len - 1) // down + 1
    if transposed:
        # Transposed convolution with stride `up` yields the fully-padded result t of length
        # (size - 1) * up + taps; the requested signal is t[taps - 1 - pad0 : size * up + pad1].
        crop0, crop1 = taps - 1 - pad0, taps - up - pad1
        conv_pad = max(0, min(crop0, crop1))
        pre = (max(0, -crop0), max(0, -crop1))  # zeros the crop cannot provide
        start = crop0 - conv_pad + pre[0]
        return _AxisPlan(0, size, pre, conv_pad, start, out_len, down)
    # Plain (strided) convolution: crop negative pads on the input, then pad symmetrically.
    in_start, in_stop = max(0, -pad0), size - max(0, -pad1)
    pad0, pad1 = max(0, pad0), max(0, pad1)
    if pad0 >= pad1:
        return _AxisPlan(in_start, in_stop, (0, 0), pad0, 0, out_len, 1)  # trailing extra outputs are cut off
    extra = pad1 - pad0
    if extra % down == 0:
        return _AxisPlan(in_start, in_stop, (0, 0), pad1, extra // down, out_len, 1)  # leading extra cut off
    return _AxisPlan(in_start, in_stop, (0, extra), pad0, 0, out_len, 1)


def _upfirdn2d_ref(x: torch.Tensor, f: torch.Tensor, up: tuple[int, int], down: tuple[int, int],
                   padding: tuple[int, int, int, int], flip_filter: bool, gain: float) -> torch.Tensor:
    """Reference upfirdn2d from depthwise (transposed) convolutions; differentiable to any order."""
    (upx, upy), (downx, downy), (px0, px1, py0, py1) = up, down, padding
    f = f.to(dtype=x.dtype, device=x.device)
    if f.ndim == 1:
        g = f * (gain ** 0.5)
        x = _fir_pass(x, g.reshape(1, -1), (1, upx), (1, downx), ((0, 0), (px0, px1)), flip_filter)
        return _fir_pass(x, g.reshape(-1, 1), (upy, 1), (downy, 1), ((py0, py1), (0, 0)), flip_filter)
    return _fir_pass(x, f * gain, (upy, upx), (downy, downx), ((py0, py1), (px0, px1)), flip_filter)


def _fir_pass(x: torch.Tensor, f: torch.Tensor, up: tuple[int, int], down: tuple[int, int],
              pads: tuple[tuple[int, int], tuple[int, int]], flip_filter: bool) -> torch.Tensor:
    """One depthwise FIR pass with the 2-D kernel `f`; `up`, `down`, `pads` are (y, x).

    When autograd records it, the pass is a `_FirPass` Function whose gradient is again a FIR pass.
    Autograd through the grouped convolution itself would work too, but PyTorch evaluates the second-order
    terms of a grouped convolution as one convolution per channel, which made R1 and path-length
    regularisation several times slower on CPU.
    """
    if torch.is_grad_enabled() and x.requires_grad and not f.requires_grad:
        return _FirPass.apply(x, f, up, down, pads, flip_filter)
    return _fir_pass_forward(x, f, up, down, pads, flip_filter)


class _FirPass(torch.autograd.Function):
    """A FIR pass differentiable to any order: the input gradient is the transposed pass (up and down
    swapped, filter flip toggled, padding recomputed). There is no gradient w.r.t. the filter."""

    generate_vmap_rule = True  # new-style (setup_context) so torch.func transforms (DP-SGD) can trace it

    @staticmethod
    def forward(x, f, up, down, pads, flip_filter):
        return _fir_pass_forward(x, f, up, down, pads, flip_filter)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, f, up, down, pads, flip_filter = inputs
        ctx.save_for_backward(f)
        ctx.conf = (up, down, pads, flip_filter, tuple(x.shape[2:]), tuple(output.shape[2:]))

    @staticmethod
    def backward(ctx, dy):
        (f,) = ctx.saved_tensors
        up, down, pads, flip_filter, in_size, out_size = ctx.conf
        # Per axis: the forward reads in_size * up + p0 + p1 samples; the transposed pass upsamples the
        # output gradient by `down` and pads it so that its filter windows land on the same samples.
        t_pads = tuple((f.shape[i] - pads[i][0] - 1, in_size[i] * up[i] - out_size[i] * down[i] + pads[i][0] - up[i] + 1)
                       for i in range(2))
        return _fir_pass(dy, f, down, up, t_pads, not flip_filter), None, None, None, None, None


def _fir_pass_forward(x: torch.Tensor, f: torch.Tensor, up: tuple[int, int], down: tuple[int, int],
                      pads: tuple[tuple[int, int], tuple[int, int]], flip_filter: bool) -> torch.Tensor:
    """The FIR pass as one depthwise (transposed) convolution."""
    batch, channels = x.shape[:2]
    # oneDNN convolves 1-4 channels (images in the augment pipe, to-RGB outputs) with a generic kernel 3-10x slower
    # than its depthwise one on the same data: filter the batch as channels of one sample instead (a view when the
    # batch and channel strides chain, as in an NCHW tensor or a spatial crop of one).
    fold = x.device.type == 'cpu' and batch > 1 and channels <= 4 and x.stride(0) == channels * x.stride(1)
    if fold:
        x = x.reshape(1, batch * channels, *x.shape[2:])
        channels = batch * channels
    transposed = up != (1, 1)
    ph, pw = (_plan_axis(x.shape[2 + i], f.shape[i], up[i], down[i], *pads[i], transposed) for i in range(2))
    if (ph.in_start, ph.in_stop, pw.in_start, pw.in_stop) != (0, x.shape[2], 0, x.shape[3]):
        x = x[:, :, ph.in_start:ph.in_stop, pw.in_start:pw.in_stop]
    # conv2d correlates, so a true convolution needs the flipped kernel; conv_transpose2d scatters,
    # which is already a convolution, so there it is the other way round.
    if flip_filter == transposed:
        f = f.flip([0, 1])
    # A materialised (not expanded) weight: oneDNN's depthwise kernels are up to 2x slower on a stride-0 one.
    weight = f[None, None].expand(channels, 1, *f.shape).contiguous()
    if transposed:
        x = _depthwise_conv_transpose2d(x, weight, up, (ph.conv_pad, pw.conv_pad))
        x = _zero_pad(x, ph.pre_pad, pw.pre_pad)
    else:
        x = _zero_pad(x, ph.pre_pad, pw.pre_pad)
        x = F.conv2d(x, weight, stride=down, padding=(ph.conv_pad, pw.conv_pad), groups=channels)
    sh, sw = (slice(p.out_start, p.out_start + (p.out_len - 1) * p.out_step + 1, p.out_step) for p in (ph, pw))
    if (sh.start, sh.stop, sh.step, sw.start, sw.stop, sw.step) != (0, x.shape[2], 1, 0, x.shape[3], 1):
        x = x[:, :, sh, sw]
    return x.reshape(batch, -1, *x.shape[2:]) if fold else x


def _depthwise_conv_transpose2d(x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int],
                                padding: tuple[int, int]) -> torch.Tensor:
    """F.conv_transpose2d with groups = channels; on a CPU as a plain depthwise conv2d of the zero-stuffed input
    (NHWC, which the stuffing copy lays out at no extra cost) with the flipped kernel: PyTorch's CPU depthwise
    transposed convolution takes a generic path, 10-40x slower in bf16 and up to several times in fp32 NCHW.
    Not under torch.func transforms (DP-SGD's per-sample gradients): the stuffing writes in place."""
    kh, kw = weight.shape[2:]
    (sy, sx), (py, px) = stride, padding
    if not (x.device.type == 'cpu' and py < kh and px < kw) or torch._C._are_functorch_transforms_active():
        return F.conv_transpose2d(x, weight, stride=stride, padding=padding, groups=x.shape[1])
    n, c, h, w = x.shape
    stuffed = torch.empty([n, c, (h - 1) * sy + 1, (w - 1) * sx + 1], dtype=x.dtype, device=x.device,
                          memory_format=torch.channels_last).zero_()
    stuffed[:, :, ::sy, ::sx] = x
    return F.conv2d(stuffed, weight.flip([2, 3]), padding=(kh - 1 - py, kw - 1 - px), groups=c)


def _zero_pad(x: torch.Tensor, pad_h: tuple[int, int], pad_w: tuple[int, int]) -> torch.Tensor:
    """Zero-pad the two spatial axes; a no-op (no copy) when nothing is to be padded."""
    if pad_h == (0, 0) and pad_w == (0, 0):
        return x
    return F.pad(x, [pad_w[0], pad_w[1], pad_h[0], pad_h[1]])

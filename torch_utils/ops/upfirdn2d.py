"""upfirdn2d: upsample by zero insertion, pad, FIR-filter, downsample, per channel of an NCHW tensor.

Semantics (per channel, per axis): insert `up - 1` zeros after every sample, pad with zeros (a negative
pad crops), convolve with the filter `f` (a true convolution unless `flip_filter`; only the fully
overlapping outputs are kept), then keep every `down`-th sample. A 2-D filter is scaled by `gain`, a
separable (1-D) filter by sqrt(gain) per axis.

The reference path never materialises the zero-stuffed signal: upsampling is a strided transposed
convolution, downsampling a strided convolution, a separable filter two 1-D depthwise convolutions, and
padding is folded into the convolutions' own symmetric padding plus views wherever possible (`upfirdn2d_ref.py`).
A CUDA kernel with the same semantics lives in `upfirdn2d_cuda.py` (chosen by `custom_ops.resolve_impl`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .. import custom_ops
from .upfirdn2d_ref import _upfirdn2d_ref

IntOrPair = int | Sequence[int]


# ----------------------------------------------------------------------------------------------------
# Filter setup and argument normalisation.


def setup_filter(
    f: object,
    device: torch.device = torch.device("cpu"),
    normalize: bool = True,
    flip_filter: bool = False,
    gain: float = 1,
    separable: bool | None = None,
) -> torch.Tensor:
    """Turn a filter description (None, scalar, 1-D or 2-D array-like) into a float32 tensor for upfirdn2d.

    A 1-D filter stays separable only with >= 8 taps (or `separable=True`); otherwise it becomes its outer
    product. `normalize` scales it to sum 1; `gain` is spread as gain ** (ndim / 2) so that the 2-D
    response is always scaled by `gain`.
    """
    f = torch.as_tensor(1 if f is None else f, dtype=torch.float32)
    if f.ndim not in (0, 1, 2) or f.numel() == 0:
        raise ValueError(f"setup_filter: expected a non-empty scalar, 1-D or 2-D filter, got shape {tuple(f.shape)}")
    if f.ndim == 0:
        f = f.reshape(1)
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if separable and f.ndim != 1:
        raise ValueError(f"setup_filter: separable=True needs a 1-D filter, got shape {tuple(f.shape)}")
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
        raise ValueError(f"upfirdn2d: {name} must be an int >= 1 or a pair of them, got {scaling!r}")
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
    raise ValueError(f"upfirdn2d: padding must be an int, (x, y) or (x0, x1, y0, y1), got {padding!r}")


def _filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """Return (width, height) of a filter as prepared by setup_filter (None means the identity)."""
    if f is None:
        return 1, 1
    if f.ndim not in (1, 2):
        raise ValueError(f"upfirdn2d: f must be 1-D (separable) or 2-D, got shape {tuple(f.shape)}")
    return f.shape[-1], f.shape[0]


# ----------------------------------------------------------------------------------------------------
# Public ops.


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: IntOrPair = 1,
    down: IntOrPair = 1,
    padding: IntOrPair = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str | None = None,
) -> torch.Tensor:
    """Upsample, pad, FIR-filter and downsample every channel of `x` [N, C, H, W] (see module docstring).

    `f` is a 1-D (separable) or 2-D filter from `setup_filter`, or None for the identity; `up`, `down` are
    ints or (x, y); `padding` is an int, (x, y) or (x0, x1, y0, y1) in upsampled pixels.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"upfirdn2d: x must be a 4-D NCHW tensor, got {getattr(x, 'shape', type(x).__name__)}")
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    _filter_size(f)
    up = _parse_scaling(up, "up")
    down = _parse_scaling(down, "down")
    padding = _parse_padding(padding)
    if custom_ops.resolve_impl("upfirdn2d", impl, x) == "cuda":
        from .upfirdn2d_cuda import upfirdn2d_cuda

        return upfirdn2d_cuda(x, f, up, down, padding, flip_filter, gain)
    return _upfirdn2d_ref(x, f, up, down, padding, flip_filter, gain)


def filter2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    padding: IntOrPair = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str | None = None,
) -> torch.Tensor:
    """FIR-filter `x`, keeping its size (plus `padding`)."""
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _filter_size(f)
    padding = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=padding, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: IntOrPair = 2,
    padding: IntOrPair = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str | None = None,
) -> torch.Tensor:
    """Upsample `x` by `up` with the interpolation filter `f`, output size = input size * up (plus `padding`)."""
    upx, upy = _parse_scaling(up, "up")
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _filter_size(f)
    padding = [px0 + (fw + upx - 1) // 2, px1 + (fw - upx) // 2, py0 + (fh + upy - 1) // 2, py1 + (fh - upy) // 2]
    # Zero insertion keeps 1 / (upx * upy) of the energy; the gain restores it.
    return upfirdn2d(x, f, up=(upx, upy), padding=padding, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)


def downsample2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    down: IntOrPair = 2,
    padding: IntOrPair = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str | None = None,
) -> torch.Tensor:
    """Low-pass filter `x` with `f` and downsample by `down`, output size = input size / down (plus `padding`)."""
    downx, downy = _parse_scaling(down, "down")
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _filter_size(f)
    padding = [
        px0 + (fw - downx + 1) // 2,
        px1 + (fw - downx) // 2,
        py0 + (fh - downy + 1) // 2,
        py1 + (fh - downy) // 2,
    ]
    return upfirdn2d(x, f, down=(downx, downy), padding=padding, flip_filter=flip_filter, gain=gain, impl=impl)

"""2-D convolution fused with upfirdn2d up- or down-sampling, as used by every resampling StyleGAN layer.

Semantics: pad `x` (by `padding` plus the resampling filter's own share, see `_total_padding`), then
[upsample by zero insertion and FIR-filter with gain up**2] -> convolve with `w` -> [FIR-filter and keep
every `down`-th pixel]. Since all stages are linear and shift-invariant, they are reordered into the
cheapest equivalent: a transposed strided convolution for upsampling, a strided convolution after the
FIR for downsampling, and the FIR on the fewer channels for 1x1 weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import conv2d_gradfix, upfirdn2d
from .upfirdn2d import IntOrPair, _filter_size, _parse_padding


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: IntOrPair = 0,
    groups: int = 1,
    flip_weight: bool = True,
    flip_filter: bool = False,
) -> torch.Tensor:
    """Convolve `x` [N, C, H, W] with `w` [O, C / groups, kh, kw], up/down-sampling with the FIR filter `f`.

    `padding` is the convolution's own padding (int, (x, y) or (x0, x1, y0, y1)); `flip_weight=True`
    means cross-correlation (as torch's conv2d), False a true convolution.
    """
    _check_args(x, w, f, up, down, groups)
    _, _, kh, kw = w.shape
    px0, px1, py0, py1 = _total_padding(f, up, down, padding)

    if kw == 1 and kh == 1 and down > 1 and up == 1:
        # A 1x1 convolution commutes with filtering: filter on whichever side has fewer pixels.
        x = upfirdn2d.upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv2d(x, w, groups=groups, flip_weight=flip_weight)
    if kw == 1 and kh == 1 and up > 1 and down == 1:
        x = _conv2d(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d.upfirdn2d(x, f, up=up, padding=[px0, px1, py0, py1], gain=up**2, flip_filter=flip_filter)
    if up > 1:
        return _upsample_conv(x, w, f, up, down, (px0, px1, py0, py1), groups, flip_weight, flip_filter)
    if down > 1:
        x = upfirdn2d.upfirdn2d(x, f, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv2d(x, w, stride=down, groups=groups, flip_weight=flip_weight)
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv2d(x, w, padding=(py0, px0), groups=groups, flip_weight=flip_weight)
    return _conv2d(F.pad(x, [px0, px1, py0, py1]), w, groups=groups, flip_weight=flip_weight)


def _check_args(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None, up: int, down: int, groups: int) -> None:
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv2d_resample: x and w must be 4-D, got {tuple(x.shape)} and {tuple(w.shape)}")
    if not (isinstance(groups, int) and groups >= 1 and x.shape[1] == w.shape[1] * groups and w.shape[0] % groups == 0):
        raise ValueError(
            f"conv2d_resample: x has {x.shape[1]} channels but w {tuple(w.shape)} with groups={groups}"
            " expects w.shape[1] * groups of them (and w.shape[0] divisible by groups)"
        )
    if not (isinstance(up, int) and isinstance(down, int) and up >= 1 and down >= 1):
        raise ValueError(f"conv2d_resample: up and down must be ints >= 1, got up={up!r}, down={down!r}")
    if f is not None and (f.ndim not in (1, 2) or not f.is_floating_point()):
        raise ValueError(
            f"conv2d_resample: f must be a floating-point 1-D or 2-D filter from setup_filter, "
            f"got {f.dtype} {tuple(f.shape)}"
        )


def _total_padding(f: torch.Tensor | None, up: int, down: int, padding: IntOrPair) -> tuple[int, int, int, int]:
    """The convolution's padding plus what the resampling filters need (as upsample2d/downsample2d)."""
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _filter_size(f)
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    return px0, px1, py0, py1


def _upsample_conv(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None,
    up: int,
    down: int,
    padding: tuple[int, int, int, int],
    groups: int,
    flip_weight: bool,
    flip_filter: bool,
) -> torch.Tensor:
    """Zero insertion + convolution as one transposed strided convolution, then the FIR (and optional down).

    Convolving the zero-stuffed, padded input with w equals the transposed convolution of the input with
    w flipped, cropped by kw - 1 - px0 on the left and kw - up - px1 on the right (likewise for y); the
    crops are handed to the FIR as (negative) padding, except for a symmetric part that the transposed
    convolution's own padding absorbs for free.
    """
    out_channels, in_per_group, kh, kw = w.shape
    px0, px1, py0, py1 = padding
    fx0, fx1, fy0, fy1 = px0 - kw + 1, px1 - kw + up, py0 - kh + 1, py1 - kh + up
    cx, cy = max(0, min(-fx0, -fx1)), max(0, min(-fy0, -fy1))
    # conv_transpose2d scatters, i.e. convolves: it wants the flip of the cross-correlation kernel, laid
    # out as [in_channels, out_channels / groups, kh, kw].
    wt = w.flip([2, 3]) if flip_weight else w
    wt = wt.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
    wt = wt.reshape(groups * in_per_group, out_channels // groups, kh, kw).to(x.dtype)
    x = conv2d_gradfix.conv_transpose2d(x, wt, stride=up, padding=(cy, cx), groups=groups)
    x = upfirdn2d.upfirdn2d(x, f, padding=[fx0 + cx, fx1 + cx, fy0 + cy, fy1 + cy], gain=up**2, flip_filter=flip_filter)
    if down > 1:
        x = upfirdn2d.upfirdn2d(x, f, down=down, flip_filter=flip_filter)
    return x


def _conv2d(
    x: torch.Tensor,
    w: torch.Tensor,
    stride: int = 1,
    padding: int | tuple[int, int] = 0,
    groups: int = 1,
    flip_weight: bool = True,
) -> torch.Tensor:
    """conv2d through conv2d_gradfix (so no_weight_gradients applies); flip_weight=False convolves."""
    if not flip_weight and (w.shape[2] > 1 or w.shape[3] > 1):
        w = w.flip([2, 3])
    return conv2d_gradfix.conv2d(x, w.to(x.dtype), stride=stride, padding=padding, groups=groups)

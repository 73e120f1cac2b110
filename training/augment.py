"""Adaptive discriminator augmentation (ADA): the augmentation pipeline and the controller of its strength p.

Follows the description in Karras et al., "Training Generative Adversarial Networks with Limited Data"
(arXiv 2006.06676) and keeps the official public names (constructor arguments, the buffers `p`, `Hz_geom`
and `Hz_fbank`, the preset names) so that snapshots interoperate. Every augmentation is differentiable
w.r.t. the images, to any order, because the discriminator sees only augmented images and the R1 penalty
differentiates through the pipe.

Image convention: float NCHW, 1 or 3 channels, values about [-1, 1]; 0 is mid-gray and is the pivot of the
colour transforms (contrast and luma flip are fixed linear maps, not per-image statistics).

Pipeline order: geometry (one inverse 3x3 matrix per sample), colour (one 4x4 matrix per sample), image
filtering (4 frequency bands), additive noise, cutout. Each op fires per sample with probability
`multiplier * p`. Samples whose geometry is made only of blits (x-flip, 90-degree rotation, integer
translation) are gathered pixel-exactly; the others are resampled (reflect pad, 2x wavelet upsampling,
bilinear sampling, 2x downsampling, crop). A sample on which nothing fired is returned bit-exactly.

Two forms with the same random draws and the same results (`AugmentPipe.fixed_shapes`): by default each group of
ops runs only on the samples that drew it and the resampler pads by margins read from the sampled matrices (the
fastest on a CPU); with `fixed_shapes = True` every op runs on the whole batch, the untouched samples are selected
back with `torch.where`, and the padding is the largest the margins can be, so that no shape depends on a drawn
value and nothing is read back to the host (what a CUDA graph needs, `training.graph_capture`).
"""

from __future__ import annotations

import functools
import math
import statistics
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

import dnnlib
from torch_utils.ops import grid_sample_gradfix, upfirdn2d

# Low-pass (scaling) filters of Daubechies' least-asymmetric wavelets, from the standard wavelet tables.
# sym6 drives the 2x resampling of the geometric ops; sym2 seeds the filter bank of `imgfilter`.
SYM2_LOWPASS = [-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025]
SYM6_LOWPASS = [
    0.015404109327027373,
    0.0034907120842174702,
    -0.11799011114819057,
    -0.048311742585633,
    0.4910559419267466,
    0.787641141030194,
    0.3379294217276218,
    -0.07263752278646252,
    -0.021060292512300564,
    0.04472490177066578,
    0.0017677118642428036,
    -0.007800708325034148,
]

# Relative power of the 4 filter-bank bands (low to high frequency) in a typical image; the band gains
# of `imgfilter` are renormalised with it so that the expected image power stays constant.
IMGFILTER_EXPECTED_POWER = [10 / 13, 1 / 13, 1 / 13, 1 / 13]

# Extra pixels around the transformed image that the resampling filters read (12 taps at 2x = 3 px,
# plus the bilinear footprint), so that the reflect padding covers them; also the margin of the window sampled at
# 2x around the output image, which the downsampling filter reads (3 px each side).
_RESAMPLE_SUPPORT = 4

_BLIT = dict(xflip=1, rotate90=1, xint=1)
_GEOM = dict(scale=1, rotate=1, aniso=1, xfrac=1)
_COLOR = dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
_FILTER = dict(imgfilter=1)
_NOISE = dict(noise=1)
_CUTOUT = dict(cutout=1)

augpipe_specs: dict[str, dict[str, float]] = {
    "blit": dict(_BLIT),
    "geom": dict(_GEOM),
    "color": dict(_COLOR),
    "filter": dict(_FILTER),
    "noise": dict(_NOISE),
    "cutout": dict(_CUTOUT),
    "bg": {**_BLIT, **_GEOM},
    "bgc": {**_BLIT, **_GEOM, **_COLOR},
    "bgcf": {**_BLIT, **_GEOM, **_COLOR, **_FILTER},
    "bgcfn": {**_BLIT, **_GEOM, **_COLOR, **_FILTER, **_NOISE},
    "bgcfnc": {**_BLIT, **_GEOM, **_COLOR, **_FILTER, **_NOISE, **_CUTOUT},
}


# ----------------------------------------------------------------------------------------------------
# Filters.


def wavelet_filter_bank(lowpass: Sequence[float], num_bands: int = 4) -> torch.Tensor:
    """Zero-phase octave filter bank [num_bands, taps] from an orthogonal wavelet's low-pass filter.

    The half-band pair lo2 = (lo * reversed lo) / sum, hi2 = delta - lo2 is power complementary for an
    orthogonal wavelet. Splitting the remaining low band with lo2/hi2 dilated by 2^level (the undecimated
    "a trous" scheme) gives bands ordered from the lowest frequency (band 0) to the highest, all
    symmetric, which sum to a delta: unit gains leave an image unchanged.
    """
    lo = torch.as_tensor(lowpass, dtype=torch.float64)
    lo2 = _convolve1d(lo, lo.flip(0))
    lo2 = lo2 / lo2.sum()
    hi2 = -lo2
    hi2[len(hi2) // 2] += 1
    low = torch.ones(1, dtype=torch.float64)
    highs = []
    for level in range(num_bands - 1):
        highs.append(_convolve1d(low, _dilate(hi2, 2**level)))
        low = _convolve1d(low, _dilate(lo2, 2**level))
    bands = [low] + highs[::-1]
    taps = len(low)
    return torch.stack([F.pad(b, [(taps - len(b)) // 2] * 2) for b in bands]).to(torch.float32)


def _convolve1d(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Full 1-D convolution of two float64 vectors."""
    out = torch.zeros(len(a) + len(b) - 1, dtype=a.dtype)
    for i, value in enumerate(a):
        out[i : i + len(b)] += value * b
    return out


def _dilate(f: torch.Tensor, step: int) -> torch.Tensor:
    """Insert `step - 1` zeros between the taps of `f`."""
    out = torch.zeros((len(f) - 1) * step + 1, dtype=f.dtype)
    out[::step] = f
    return out


# ----------------------------------------------------------------------------------------------------
# Random draws.


class _Draws:
    """Per-sample random numbers from torch's global generator, or fixed quantiles in debug mode.

    With `debug_percentile` q every uniform draw is q and every normal draw is the q-quantile of N(0, 1),
    so an op fires whenever q < its probability and its parameters are known in closed form.
    """

    def __init__(self, batch_size: int, device: torch.device, debug_percentile: float | None):
        if debug_percentile is not None and not 0 <= debug_percentile < 1:
            raise ValueError(f"AugmentPipe: debug_percentile must be in [0, 1), got {debug_percentile}")
        self.batch_size = batch_size
        self.device = device
        self.q = debug_percentile

    def uniform(self, *shape: int) -> torch.Tensor:
        """U[0, 1) of shape [batch, *shape]."""
        size = (self.batch_size, *shape)
        if self.q is not None:
            return torch.full(size, self.q, device=self.device)
        return torch.rand(size, device=self.device)

    def normal(self, *shape: int) -> torch.Tensor:
        """N(0, 1) of shape [batch, *shape]."""
        size = (self.batch_size, *shape)
        if self.q is not None:
            z = -math.inf if self.q == 0 else statistics.NormalDist().inv_cdf(self.q)  # erfinv(-1) = -inf
            return torch.full(size, z, device=self.device)
        return torch.randn(size, device=self.device)

    def fires(self, prob: torch.Tensor) -> torch.Tensor:
        """Bool [batch]: whether an op applies to each sample, with probability `prob`."""
        return self.uniform() < prob


# ----------------------------------------------------------------------------------------------------
# Homogeneous matrices, batched over the leading dimension. Elements are broadcast tensors or numbers.


@functools.cache
def _constant(values: tuple, device: torch.device) -> torch.Tensor:
    """A float32 tensor of fixed `values` (nested tuples) on `device`, made once: a tensor built from host data is a
    host-to-device copy, which a CUDA graph cannot replay. Callers must not modify it."""
    return torch.tensor(values, dtype=torch.float32, device=device)


def _matrix(rows: Sequence[Sequence[Any]], like: torch.Tensor) -> torch.Tensor:
    """Stack a nested list of per-sample values (tensors [N] or numbers) into [N, R, C]."""
    n = like.shape[0]
    elems = [
        e.to(torch.float32).expand(n)
        if isinstance(e, torch.Tensor)
        else torch.full([n], float(e), dtype=torch.float32, device=like.device)
        for row in rows
        for e in row
    ]
    return torch.stack(elems, dim=1).reshape(n, len(rows), len(rows[0]))


def _translate2d(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], tx)


def _scale2d(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], sx)


def _rotate2d(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotation taking +x towards +y (image rows grow downwards) given its cosine and sine."""
    return _matrix([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]], cos)


_LUMA = 1 / math.sqrt(3)


def _luma_axis(like: torch.Tensor) -> torch.Tensor:
    """The gray axis v = (1, 1, 1, 0) / sqrt(3) in homogeneous colour space, as [1, 4, 1]."""
    return _constant(((_LUMA,), (_LUMA,), (_LUMA,), (0.0,)), like.device).unsqueeze(0)


def _translate3d(t: torch.Tensor) -> torch.Tensor:
    """Add t to every colour channel."""
    return _matrix([[1, 0, 0, t], [0, 1, 0, t], [0, 0, 1, t], [0, 0, 0, 1]], t)


def _scale3d(s: torch.Tensor) -> torch.Tensor:
    """Multiply every colour channel by s (about 0, mid-gray)."""
    return _matrix([[s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1]], s)


def _luma_flip(k: torch.Tensor) -> torch.Tensor:
    """Householder reflection I - 2 v v^T across the gray axis where k = 1, identity where k = 0."""
    v = _luma_axis(k)
    eye = torch.eye(4, device=k.device).expand(k.shape[0], 4, 4)
    return eye - 2 * k.reshape(-1, 1, 1) * (v @ v.transpose(1, 2))


def _rotate_about_luma(theta: torch.Tensor) -> torch.Tensor:
    """Hue rotation: rotate the colour about the gray axis v by theta (Rodrigues' formula)."""
    v = _LUMA
    cross = _constant(((0, -v, v), (v, 0, -v), (-v, v, 0)), theta.device)  # [v]_x for v = (1, 1, 1) / sqrt(3)
    outer = _constant(((v * v,) * 3,) * 3, theta.device)  # v v^T
    c, s = theta.cos().reshape(-1, 1, 1), theta.sin().reshape(-1, 1, 1)
    rot = c * torch.eye(3, device=theta.device) + s * cross + (1 - c) * outer
    out = torch.eye(4, device=theta.device).repeat(theta.shape[0], 1, 1)
    out[:, :3, :3] = rot
    return out


def _scale_chroma(s: torch.Tensor) -> torch.Tensor:
    """Saturation: keep the gray component, scale the components perpendicular to it by s."""
    v = _luma_axis(s)
    vv = v @ v.transpose(1, 2)
    eye = torch.eye(4, device=s.device)
    out = vv + s.reshape(-1, 1, 1) * (eye - vv)
    out[:, 3, 3] = 1
    return out


# ----------------------------------------------------------------------------------------------------
# Pixel plumbing.


def _reflect_index(i: torch.Tensor, n: int) -> torch.Tensor:
    """Map any integer index onto [0, n) by mirroring about the edge pixels (torch's 'reflect' rule)."""
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    i = i.remainder(period)
    return torch.where(i >= n, period - i, i)


def _reflect_pad(x: torch.Tensor, left: int, right: int, top: int, bottom: int) -> torch.Tensor:
    """Reflect-pad NCHW by any amount (repeating the mirror if a pad exceeds the image)."""
    h, w = x.shape[2], x.shape[3]
    cols = _reflect_index(torch.arange(-left, w + right, device=x.device), w)
    rows = _reflect_index(torch.arange(-top, h + bottom, device=x.device), h)
    return x.index_select(3, cols).index_select(2, rows)


def _pixel_centres(size: int, device: torch.device) -> torch.Tensor:
    """Centre coordinates of `size` pixels, in pixels, with the origin at the middle of the image."""
    return torch.arange(size, device=device, dtype=torch.float32) + 0.5 - size / 2


def _blit(x: torch.Tensor, g_inv: torch.Tensor) -> torch.Tensor:
    """Exact gather for transforms that map pixel centres onto pixel centres (flips, 90-degree turns,
    integer shifts), with reflection beyond the edges."""
    n, c, h, w = x.shape
    ys, xs = torch.meshgrid(_pixel_centres(h, x.device), _pixel_centres(w, x.device), indexing="ij")
    coords = torch.stack([xs.flatten(), ys.flatten(), torch.ones_like(xs.flatten())])
    src = g_inv @ coords
    cols = _reflect_index(torch.round(src[:, 0] + w / 2 - 0.5).long(), w)
    rows = _reflect_index(torch.round(src[:, 1] + h / 2 - 0.5).long(), h)
    index = (rows * w + cols).unsqueeze(1).expand(n, c, h * w)
    return x.reshape(n, c, h * w).gather(2, index).reshape(n, c, h, w)


def _resample_margins(g_inv: torch.Tensor, h: int, w: int) -> tuple[int, int, int, int]:
    """Reflect-padding (left, right, top, bottom) that covers where the output image reads from.

    The output rectangle, grown by the filter support, is mapped to the source; the padding reaches past
    the image edges as far as any sample reads (at most one image size, beyond which the output is 0).
    Reads the margins back to the host: `_largest_margins` is the fixed-shape alternative.
    """
    hx, hy = w / 2 + _RESAMPLE_SUPPORT, h / 2 + _RESAMPLE_SUPPORT
    corners = _constant(((-hx, -hx, hx, hx), (-hy, hy, -hy, hy), (1, 1, 1, 1)), g_inv.device)
    src = g_inv @ corners
    lo = src[:, :2].amin(dim=(0, 2))
    hi = src[:, :2].amax(dim=(0, 2))
    size = _constant((w, h), g_inv.device)
    before = (-size / 2 - lo).clamp(min=0).ceil().minimum(size - 1)
    after = (hi - size / 2).clamp(min=0).ceil().minimum(size - 1)
    left, top, right, bottom = (torch.cat([before, after]) + _RESAMPLE_SUPPORT).long().tolist()
    return left, right, top, bottom


def _largest_margins(h: int, w: int) -> tuple[int, int, int, int]:
    """The margins `_resample_margins` can return at most, whatever the matrices: the same output, fixed shapes."""
    return (w - 1 + _RESAMPLE_SUPPORT,) * 2 + (h - 1 + _RESAMPLE_SUPPORT,) * 2


def _resample(x: torch.Tensor, g_inv: torch.Tensor, lowpass: torch.Tensor, fixed_shapes: bool = False) -> torch.Tensor:
    """Apply per-sample inverse affine maps `g_inv` [N, 3, 3] (output pixel -> source pixel, centred
    coordinates) with reflect padding, 2x oversampled bilinear sampling and an orthogonal-wavelet
    low-pass for both resampling steps.

    The downsampling uses the time-reversed filter, so that up- then downsampling is the identity for an
    orthogonal wavelet (its autocorrelation vanishes at non-zero even lags): an identity map reproduces
    the input up to float rounding, and the filter adds no phase shift. `fixed_shapes` pads by the largest
    margins instead of those the matrices need (same output up to rounding, no host read).
    """
    n, c, h, w = x.shape
    left, right, top, bottom = _largest_margins(h, w) if fixed_shapes else _resample_margins(g_inv, h, w)
    x = _reflect_pad(x, left, right, top, bottom)
    wp, hp = x.shape[3], x.shape[2]
    f = (lowpass / lowpass.sum()).to(x.dtype)
    x = upfirdn2d.upsample2d(x, f, up=2)
    # A least-asymmetric wavelet is not exactly symmetric: the upsampled image sits `delay` pixels off the
    # grid that upsample2d assumes (and the flipped downsampling reads the same offset), so the transform
    # is applied about the shifted centre. The delay is the filter's centre of mass, exact at low frequency.
    taps = torch.arange(len(lowpass), device=x.device, dtype=torch.float32)
    delay = ((taps * lowpass).sum() / lowpass.sum() - (len(lowpass) - 1) / 2) / 2 * torch.ones(n, device=x.device)
    g_inv = _translate2d(delay, delay) @ g_inv @ _translate2d(-delay, -delay)
    # Sample at 2x only the output image grown by the downsampling filter's support (not the whole canvas):
    # those samples' centres in centred pixel coordinates, mapped to the source and then to the upsampled
    # canvas's [-1, 1] (align_corners=False: pixel i of the canvas covers [i, i + 1] of wp).
    s = _RESAMPLE_SUPPORT
    xs = (torch.arange(2 * (w + 2 * s), device=x.device, dtype=torch.float32) + 0.5) / 2 - (w / 2 + s)
    ys = (torch.arange(2 * (h + 2 * s), device=x.device, dtype=torch.float32) + 0.5) / 2 - (h / 2 + s)
    m = g_inv.reshape(n, 3, 3, 1, 1)
    src_x = m[:, 0, 0] * xs.reshape(1, 1, -1) + m[:, 0, 1] * ys.reshape(1, -1, 1) + m[:, 0, 2]
    src_y = m[:, 1, 0] * xs.reshape(1, 1, -1) + m[:, 1, 1] * ys.reshape(1, -1, 1) + m[:, 1, 2]
    grid = torch.stack([(src_x + (w / 2 + left)) * (2 / wp) - 1, (src_y + (h / 2 + top)) * (2 / hp) - 1], dim=3)
    x = grid_sample_gradfix.grid_sample(x, grid.to(x.dtype))
    x = upfirdn2d.downsample2d(x, f, down=2, flip_filter=True)
    return x[:, :, s : s + h, s : s + w]


def _filter_separable(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Convolve each sample with its own symmetric-length 1-D filter [N, L] along x and then y, with
    reflect padding (output size = input size)."""
    n, c, h, w = x.shape
    length = taps.shape[1]
    pad = length // 2
    x = _reflect_pad(x, pad, length - 1 - pad, pad, length - 1 - pad)
    kernel = taps.flip(1).to(x.dtype).repeat_interleave(c, dim=0)  # flip: true convolution
    x = x.reshape(1, n * c, h + length - 1, w + length - 1)
    x = F.conv2d(x, kernel.reshape(n * c, 1, 1, length), groups=n * c)
    x = F.conv2d(x, kernel.reshape(n * c, 1, length, 1), groups=n * c)
    return x.reshape(n, c, h, w)


def _apply_to_subset(
    x: torch.Tensor, mask: torch.Tensor, fn: Callable[[torch.Tensor, Any], torch.Tensor], fixed_shapes: bool
) -> torch.Tensor:
    """Replace the samples selected by `mask` with fn(x[idx], idx); the others stay bit-exact.

    By default only the selected samples are computed (their indices are read back to the host); with
    `fixed_shapes` every sample is (idx is a full slice) and the selection is a `torch.where`.
    """
    if fixed_shapes:
        return torch.where(mask.reshape(-1, 1, 1, 1), fn(x, slice(None)), x)
    idx = mask.nonzero().flatten()
    if idx.numel() == 0:
        return x
    return x.index_copy(0, idx, fn(x[idx], idx))


# ----------------------------------------------------------------------------------------------------
# The pipeline.


class AugmentPipe(torch.nn.Module):
    """ADA's differentiable augmentation pipeline; each op's argument is its probability multiplier.

    The strength is the buffer `p` (0 at construction): the training loop sets it directly for a fixed
    strength (`set_p`) or through `AdaController`. Buffers `Hz_geom` [12] (sym6 low-pass) and
    `Hz_fbank` [4, 43] (filter bank from sym2) are kept in the state_dict under their official names.
    """

    def __init__(
        self,
        xflip: float = 0,
        rotate90: float = 0,
        xint: float = 0,
        xint_max: float = 0.125,
        scale: float = 0,
        rotate: float = 0,
        aniso: float = 0,
        xfrac: float = 0,
        scale_std: float = 0.2,
        rotate_max: float = 1,
        aniso_std: float = 0.2,
        xfrac_std: float = 0.125,
        brightness: float = 0,
        contrast: float = 0,
        lumaflip: float = 0,
        hue: float = 0,
        saturation: float = 0,
        brightness_std: float = 0.2,
        contrast_std: float = 0.5,
        hue_max: float = 1,
        saturation_std: float = 1,
        imgfilter: float = 0,
        imgfilter_bands: Sequence[float] = (1, 1, 1, 1),
        imgfilter_std: float = 1,
        noise: float = 0,
        cutout: float = 0,
        noise_std: float = 0.1,
        cutout_size: float = 0.5,
    ):
        super().__init__()
        imgfilter_bands = [float(b) for b in imgfilter_bands]
        if len(imgfilter_bands) != len(IMGFILTER_EXPECTED_POWER):
            raise ValueError(
                f"AugmentPipe: imgfilter_bands needs {len(IMGFILTER_EXPECTED_POWER)} values, got {imgfilter_bands}"
            )
        self.init_kwargs = dnnlib.EasyDict(
            xflip=xflip,
            rotate90=rotate90,
            xint=xint,
            xint_max=xint_max,
            scale=scale,
            rotate=rotate,
            aniso=aniso,
            xfrac=xfrac,
            scale_std=scale_std,
            rotate_max=rotate_max,
            aniso_std=aniso_std,
            xfrac_std=xfrac_std,
            brightness=brightness,
            contrast=contrast,
            lumaflip=lumaflip,
            hue=hue,
            saturation=saturation,
            brightness_std=brightness_std,
            contrast_std=contrast_std,
            hue_max=hue_max,
            saturation_std=saturation_std,
            imgfilter=imgfilter,
            imgfilter_bands=imgfilter_bands,
            imgfilter_std=imgfilter_std,
            noise=noise,
            cutout=cutout,
            noise_std=noise_std,
            cutout_size=cutout_size,
        )
        for name, value in self.init_kwargs.items():
            if name != "imgfilter_bands":
                if not isinstance(value, (int, float)) or value < 0:
                    raise ValueError(f"AugmentPipe: {name} must be a number >= 0, got {value!r}")
                setattr(self, name, float(value))
        self.imgfilter_bands = imgfilter_bands
        self.register_buffer("p", torch.zeros([]))
        self.register_buffer("Hz_geom", torch.tensor(SYM6_LOWPASS, dtype=torch.float32))
        self.register_buffer("Hz_fbank", wavelet_filter_bank(SYM2_LOWPASS, num_bands=4))
        # The form of the computation, not of the augmentation (same draws, same results; module docstring):
        # not a constructor argument, so snapshots do not carry it.
        self.fixed_shapes = False

    def set_p(self, p: float) -> None:
        """Set a fixed augmentation strength (the `--aug=fixed` mode)."""
        if not p >= 0:
            raise ValueError(f"AugmentPipe: p must be >= 0, got {p}")
        if p > AdaController.WARN_P:
            warnings.warn(
                f"AugmentPipe: a fixed p = {p} above {AdaController.WARN_P} may leak augmentations "
                f"into the generated images",
                stacklevel=2,
            )
        self.p.fill_(float(p))

    def forward(self, images: torch.Tensor, debug_percentile: float | None = None) -> torch.Tensor:
        """Augment a batch [N, C, H, W] (C = 1 or 3); `debug_percentile` replaces every random draw by that
        quantile, making the output deterministic."""
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"AugmentPipe: images must be [N, C, H, W] with C = 1 or 3, got {tuple(images.shape)}")
        draws = _Draws(images.shape[0], images.device, debug_percentile)
        x = images
        if max(self.xflip, self.rotate90, self.xint, self.scale, self.rotate, self.aniso, self.xfrac) > 0:
            x = self._augment_geometry(x, draws)
        if max(self.brightness, self.contrast, self.lumaflip, self.hue, self.saturation) > 0:
            x = self._augment_color(x, draws)
        if self.imgfilter > 0:
            x = self._augment_filter(x, draws)
        if self.noise > 0:
            x = self._augment_noise(x, draws)
        if self.cutout > 0:
            x = self._augment_cutout(x, draws)
        return x

    def _gate(self, draws: _Draws, multiplier: float, value: torch.Tensor, neutral: float) -> torch.Tensor:
        """`value` where the op fires (probability multiplier * p), `neutral` elsewhere."""
        fire = draws.fires(multiplier * self.p)
        return torch.where(fire.reshape(-1, *[1] * (value.ndim - 1)), value, torch.full_like(value, neutral))

    def _augment_geometry(self, x: torch.Tensor, draws: _Draws) -> torch.Tensor:
        n, _, h, w = x.shape
        if self.rotate90 > 0 and h != w:
            raise ValueError(f"AugmentPipe: rotate90 needs square images, got {h}x{w}")
        g_inv, fired, resample = self._geometry_matrices(draws, h, w)
        fixed = self.fixed_shapes
        x = _apply_to_subset(x, fired & ~resample, lambda xs, idx: _blit(xs, g_inv[idx]), fixed)
        if max(self.scale, self.rotate, self.aniso, self.xfrac) == 0:
            return x  # blits only: nothing can need resampling
        return _apply_to_subset(x, resample, lambda xs, idx: _resample(xs, g_inv[idx], self.Hz_geom, fixed), fixed)

    def _geometry_matrices(self, draws: _Draws, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inverse maps [N, 3, 3] (output -> source pixel, centred coordinates), plus which samples changed
        and which need resampling. Each op's inverse is appended on the right, so the forward transform
        applies the ops in order: xflip, rotate90, xint, scale, rotate, aniso, rotate, xfrac."""
        g_inv = torch.eye(3, device=draws.device).repeat(draws.batch_size, 1, 1)
        identity = g_inv.clone()
        resample = torch.zeros(draws.batch_size, dtype=torch.bool, device=draws.device)
        size = _constant((w, h), draws.device)

        def changed(m: torch.Tensor) -> torch.Tensor:
            return (m != identity).flatten(1).any(dim=1)

        if self.xflip > 0:
            k = self._gate(draws, self.xflip, torch.floor(draws.uniform() * 2), 0)
            g_inv = g_inv @ _scale2d(1 - 2 * k, torch.ones_like(k))
        if self.rotate90 > 0:
            k = self._gate(draws, self.rotate90, torch.floor(draws.uniform() * 4).clamp(max=3), 0).long()
            cos = _constant((1, 0, -1, 0), draws.device)[k]  # exact, unlike cos(k * pi / 2)
            sin = _constant((0, 1, 0, -1), draws.device)[k]
            g_inv = g_inv @ _rotate2d(cos, sin)
        if self.xint > 0:
            t = torch.round((draws.uniform(2) * 2 - 1) * self.xint_max * size)
            t = self._gate(draws, self.xint, t, 0)
            g_inv = g_inv @ _translate2d(-t[:, 0], -t[:, 1])
        if self.scale > 0:
            s = self._gate(draws, self.scale, torch.exp2(draws.normal() * self.scale_std), 1)
            g_inv = g_inv @ _scale2d(1 / s, 1 / s)
            resample |= s != 1
        rotate_prob = 1 - torch.sqrt((1 - self.rotate * self.p).clamp(min=0))  # twice -> overall rotate * p
        if self.rotate > 0:
            g_inv, resample = self._random_rotation(draws, rotate_prob, g_inv, resample)
        if self.aniso > 0:
            a = self._gate(draws, self.aniso, torch.exp2(draws.normal() * self.aniso_std), 1)
            g_inv = g_inv @ _scale2d(1 / a, a)
            resample |= a != 1
        if self.rotate > 0:
            g_inv, resample = self._random_rotation(draws, rotate_prob, g_inv, resample)
        if self.xfrac > 0:
            t = self._gate(draws, self.xfrac, draws.normal(2) * self.xfrac_std * size, 0)
            g_inv = g_inv @ _translate2d(-t[:, 0], -t[:, 1])
            resample |= (t != 0).any(dim=1)
        return g_inv, changed(g_inv) | resample, resample

    def _random_rotation(
        self, draws: _Draws, prob: torch.Tensor, g_inv: torch.Tensor, resample: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        theta = (draws.uniform() * 2 - 1) * math.pi * self.rotate_max
        fire = draws.fires(prob)
        theta = torch.where(fire, theta, torch.zeros_like(theta))
        return g_inv @ _rotate2d(torch.cos(-theta), torch.sin(-theta)), resample | (theta != 0)

    def _augment_color(self, x: torch.Tensor, draws: _Draws) -> torch.Tensor:
        """One 4x4 matrix per sample, applied to (r, g, b, 1); a gray image uses the rows' mean."""
        n, c, h, w = x.shape
        m = torch.eye(4, device=x.device).repeat(n, 1, 1)
        if self.brightness > 0:
            b = self._gate(draws, self.brightness, draws.normal() * self.brightness_std, 0)
            m = _translate3d(b) @ m
        if self.contrast > 0:
            s = self._gate(draws, self.contrast, torch.exp2(draws.normal() * self.contrast_std), 1)
            m = _scale3d(s) @ m
        if self.lumaflip > 0:
            k = self._gate(draws, self.lumaflip, torch.floor(draws.uniform() * 2), 0)
            m = _luma_flip(k) @ m
        if c == 3 and self.hue > 0:  # hue and saturation have no meaning for a gray image
            theta = self._gate(draws, self.hue, (draws.uniform() * 2 - 1) * math.pi * self.hue_max, 0)
            m = _rotate_about_luma(theta) @ m
        if c == 3 and self.saturation > 0:
            s = self._gate(draws, self.saturation, torch.exp2(draws.normal() * self.saturation_std), 1)
            m = _scale_chroma(s) @ m
        m = m.to(x.dtype)
        if c == 3:
            out = m[:, :3, :3] @ x.reshape(n, 3, h * w) + m[:, :3, 3:]
            return out.reshape(n, 3, h, w)
        # Gray (a, a, a, 1) -> mean of the 3 output channels = row mean of m applied to it.
        row = m[:, :3, :].mean(dim=1)
        return x * row[:, :3].sum(dim=1).reshape(n, 1, 1, 1) + row[:, 3].reshape(n, 1, 1, 1)

    def _augment_filter(self, x: torch.Tensor, draws: _Draws) -> torch.Tensor:
        """Amplify each frequency band by 2^N(0, imgfilter_std^2) (per sample, per band, each with probability
        imgfilter * band multiplier * p), then rescale all gains so that the expected image power,
        sum(IMGFILTER_EXPECTED_POWER * gain^2), stays 1."""
        n = x.shape[0]
        num_bands = self.Hz_fbank.shape[0]
        power = _constant(tuple(IMGFILTER_EXPECTED_POWER), x.device)
        gains = torch.ones(n, num_bands, device=x.device)
        for band, band_multiplier in enumerate(self.imgfilter_bands):
            if band_multiplier > 0:
                amplify = torch.exp2(draws.normal() * self.imgfilter_std)
                gains[:, band] = self._gate(draws, self.imgfilter * band_multiplier, amplify, 1)
        changed = (gains != 1).any(dim=1)
        gains = gains / (power * gains.square()).sum(dim=1, keepdim=True).sqrt()
        taps = gains @ self.Hz_fbank
        return _apply_to_subset(x, changed, lambda xs, idx: _filter_separable(xs, taps[idx]), self.fixed_shapes)

    def _augment_noise(self, x: torch.Tensor, draws: _Draws) -> torch.Tensor:
        """Additive Gaussian noise with a per-sample sigma = |N(0, 1)| * noise_std."""
        n, c, h, w = x.shape
        sigma = self._gate(draws, self.noise, draws.normal().abs() * self.noise_std, 0)
        return x + draws.normal(c, h, w).to(x.dtype) * sigma.reshape(n, 1, 1, 1).to(x.dtype)

    def _augment_cutout(self, x: torch.Tensor, draws: _Draws) -> torch.Tensor:
        """Zero a square of side cutout_size (a fraction of the image side) at a uniform random centre."""
        n, _, h, w = x.shape
        centre = draws.uniform(2)
        size = self._gate(draws, self.cutout, torch.full([n], self.cutout_size, device=x.device), 0)
        cols = (torch.arange(w, device=x.device) + 0.5) / w
        rows = (torch.arange(h, device=x.device) + 0.5) / h
        inside_x = (cols.reshape(1, w) - centre[:, :1]).abs() < size.reshape(n, 1) / 2
        inside_y = (rows.reshape(1, h) - centre[:, 1:]).abs() < size.reshape(n, 1) / 2
        keep = ~(inside_y.unsqueeze(2) & inside_x.unsqueeze(1))
        return x * keep.unsqueeze(1).to(x.dtype)


# ----------------------------------------------------------------------------------------------------
# The controller.


class AdaController:
    """Adjusts `AugmentPipe.p` from the overfitting heuristic r_t = E[sign(D(real))].

    Call `accumulate(real_logits)` whenever the discriminator scores reals and `step(augment_pipe)` once per
    training iteration; every `interval` iterations r_t is computed over everything accumulated since the
    last adjustment (summed over processes when torch.distributed is initialised) and
    p <- clamp(p + sign(r_t - target) * batch_size * interval / (ada_kimg * 1000), 0, p_max),
    so p can traverse 0 -> 1 in ada_kimg thousand images. `batch_size` is the global batch.
    """

    WARN_P = 0.8

    def __init__(self, target: float, batch_size: int, interval: int = 4, ada_kimg: float = 500, p_max: float = 1.0):
        if not 0 <= target <= 1:
            raise ValueError(f"AdaController: target must be in [0, 1], got {target}")
        if batch_size < 1 or interval < 1 or ada_kimg <= 0:
            raise ValueError(
                f"AdaController: batch_size and interval must be >= 1 and ada_kimg > 0, "
                f"got {batch_size}, {interval}, {ada_kimg}"
            )
        if not p_max >= 0:
            raise ValueError(f"AdaController: p_max must be >= 0, got {p_max}")
        self.target = float(target)
        self.batch_size = int(batch_size)
        self.interval = int(interval)
        self.ada_kimg = float(ada_kimg)
        self.p_max = float(p_max)
        self._r_t = torch.tensor(math.nan, dtype=torch.float64)  # the latest heuristic (NaN: none yet)
        self._stats: torch.Tensor | None = None  # [sum of signs, count], on the logits' device
        self._iterations = 0
        self._warned = False

    @property
    def step_size(self) -> float:
        """How much one adjustment moves p."""
        return self.batch_size * self.interval / (self.ada_kimg * 1000)

    def accumulate(self, real_logits: torch.Tensor) -> None:
        """Add the signs of a batch of discriminator outputs on real images (any shape).

        Adds in place into one tensor on the logits' device, so that a phase captured as a CUDA graph keeps adding
        into the memory that `step` reads.
        """
        logits = real_logits.detach().flatten().to(torch.float64)
        count = torch.full([], logits.numel(), dtype=torch.float64, device=logits.device)
        if self._stats is None or self._stats.device != logits.device:
            previous = self._stats
            self._stats = torch.zeros(2, dtype=torch.float64, device=logits.device)
            if previous is not None:
                self._stats.add_(previous.to(logits.device))
        self._stats.add_(torch.stack([logits.sign().sum(), count]))

    def step(self, augment_pipe: AugmentPipe) -> bool:
        """Count one training iteration; every `interval`-th adjusts augment_pipe.p. Returns whether one was due.

        The adjustment is computed on p's device and never read back (no host-device synchronisation per
        iteration); an interval in which no real was scored leaves p and r_t as they were.
        """
        self._iterations += 1
        if self._iterations < self.interval:
            return False
        self._iterations = 0
        sign_sum, count = self._gather_stats(augment_pipe.p.device)
        r_t = torch.where(count > 0, sign_sum / count.clamp(min=1), self._r_t.to(count.device))
        p = augment_pipe.p.to(torch.float64) + torch.sign(r_t - self.target) * self.step_size
        augment_pipe.p.copy_(torch.where(count > 0, p.clamp(0.0, self.p_max), augment_pipe.p))
        self._r_t = r_t
        if self._stats is not None:
            self._stats.zero_()  # after its last use above; in place, see `accumulate`
        return True

    @property
    def r_t(self) -> float | None:
        """The latest heuristic, for logging (None before the first adjustment); reading it waits for the device."""
        value = float(self._r_t)
        return None if math.isnan(value) else value

    def _gather_stats(self, device: torch.device) -> torch.Tensor:
        """[sum of signs, count] since the last adjustment, summed over all processes, float64 on the device."""
        stats = self._stats if self._stats is not None else torch.zeros(2, dtype=torch.float64, device=device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            stats = stats.clone()
            torch.distributed.all_reduce(stats)
        return stats

    def warn_if_high(self, p: float) -> None:
        """Warn once when p exceeds WARN_P; the loop calls it at each tick with the p it reads for its status."""
        if p > self.WARN_P and not self._warned:
            self._warned = True
            warnings.warn(
                f"ADA: augmentation probability p = {p:.3f} exceeds {self.WARN_P}; augmentations may "
                f"leak into the generated images (clamped at p_max = {self.p_max})",
                stacklevel=3,
            )

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume mid-interval (p itself lives in the AugmentPipe's state_dict)."""
        stats = [0.0, 0.0] if self._stats is None else self._stats.tolist()
        return dict(sign_sum=stats[0], count=stats[1], iterations=self._iterations, r_t=self.r_t, warned=self._warned)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        expected = {"sign_sum", "count", "iterations", "r_t", "warned"}
        if set(state) != expected:
            raise ValueError(f"AdaController.load_state_dict: expected keys {sorted(expected)}, got {sorted(state)}")
        self._stats = (
            None if state["count"] == 0 else torch.tensor([state["sign_sum"], state["count"]], dtype=torch.float64)
        )
        self._iterations = int(state["iterations"])
        self._r_t = torch.tensor(math.nan if state["r_t"] is None else state["r_t"], dtype=torch.float64)
        self._warned = bool(state["warned"])

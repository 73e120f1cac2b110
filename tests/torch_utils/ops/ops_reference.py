"""Brute-force float64 numpy references for the ops tests: literal loops over taps, no torch convolutions.

Written straight from the ops' definitions so that they share no code (and no bugs) with the fast paths.
"""

from __future__ import annotations

import numpy as np


def zero_stuff(x: np.ndarray, upy: int, upx: int) -> np.ndarray:
    """Insert up-1 zeros after every sample along H and W of an [N, C, H, W] array."""
    n, c, h, w = x.shape
    z = np.zeros((n, c, h * upy, w * upx), dtype=np.float64)
    z[:, :, ::upy, ::upx] = x
    return z


def pad_or_crop(x: np.ndarray, px0: int, px1: int, py0: int, py1: int) -> np.ndarray:
    """Zero-pad H and W; negative amounts crop instead."""
    n, c, h, w = x.shape
    out = np.zeros((n, c, h + max(py0, 0) + max(py1, 0), w + max(px0, 0) + max(px1, 0)), dtype=np.float64)
    out[:, :, max(py0, 0) : max(py0, 0) + h, max(px0, 0) : max(px0, 0) + w] = x
    return out[:, :, max(-py0, 0) : out.shape[2] - max(-py1, 0), max(-px0, 0) : out.shape[3] - max(-px1, 0)]


def correlate_valid(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Per-channel 'valid' cross-correlation of [N, C, H, W] with a 2-D kernel, by looping over taps."""
    kh, kw = k.shape
    oh, ow = x.shape[2] - kh + 1, x.shape[3] - kw + 1
    out = np.zeros(x.shape[:2] + (oh, ow), dtype=np.float64)
    for a in range(kh):
        for b in range(kw):
            out += k[a, b] * x[:, :, a : a + oh, b : b + ow]
    return out


def upfirdn2d(
    x: np.ndarray,
    f: np.ndarray,
    up=(1, 1),
    down=(1, 1),
    padding=(0, 0, 0, 0),
    flip_filter: bool = False,
    gain: float = 1.0,
) -> np.ndarray:
    """Zero-stuff, pad, convolve (true convolution unless flip_filter), subsample; (x, y) pairs as the op."""
    f2 = np.outer(f, f) if f.ndim == 1 else f  # separable: sqrt(gain) per axis = gain overall
    f2 = f2 * gain
    if not flip_filter:
        f2 = f2[::-1, ::-1]
    z = pad_or_crop(zero_stuff(x, up[1], up[0]), *padding)
    return correlate_valid(z, f2)[:, :, :: down[1], :: down[0]]


def conv2d(x: np.ndarray, w: np.ndarray, groups: int = 1) -> np.ndarray:
    """'valid' grouped cross-correlation, w: [O, I/groups, kh, kw], no padding, stride 1."""
    n, c, h, _ = x.shape
    o, ig, kh, kw = w.shape
    og = o // groups
    out = np.zeros((n, o, h - kh + 1, x.shape[3] - kw + 1), dtype=np.float64)
    for oc in range(o):
        g = oc // og
        for ic in range(ig):
            out[:, oc] += correlate_valid(x[:, g * ig + ic : g * ig + ic + 1], w[oc, ic])[:, 0]
    return out

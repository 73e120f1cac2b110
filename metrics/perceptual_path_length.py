"""Perceptual path length (Karras et al. 2019), under NVIDIA's names and definitions.

Pairs (z0, z1) with labels drawn from the dataset; t = 0 ('end') or U[0, 1) ('full'); the path is slerp in Z or
lerp in W (after the mapping), sampled at t and t + epsilon (1e-4). Both images are synthesised with freshly drawn
noise maps (noise 'const', fp32), optionally cropped to rows 3/8-7/8 and columns 2/8-6/8 (the face region of
FFHQ), box-downsampled to 256 px when larger, and compared in NVIDIA's VGG16 LPIPS features:
d = |f(t + eps) - f(t)|^2 / eps^2. PPL is the mean of d over the samples between its 1st and 99th percentile.

  ppl_zfull  Z, full, crop      ppl_wfull  W, full, crop      ppl_zend  Z, end, crop      ppl_wend  W, end, crop
  ppl2_wend  W, end, no crop (the current official one)       50,000 samples each

Without the VGG16 detector these names refuse with the ways to provide it; the suffix `_pixel` (e.g.
`ppl2_wend_pixel`) computes the same path length in the weight-free pixel-pyramid distance of metrics/perceptual.py
(a different number, not comparable with published PPL). Seeded (official: unseeded); every process computes all
samples.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch

from metrics.detectors import Detector
from metrics.metric_utils import MetricOptions, progress_bar, sample_labels
from metrics.perceptual import squared_distance

NUM_SAMPLES = 50000
EPSILON = 1e-4
DOWNSAMPLE_SIZE = 256


@dataclasses.dataclass(frozen=True)
class PathSpec:
    space: str  # 'z' | 'w'
    sampling: str  # 'full' | 'end'
    crop: bool


VARIANTS = {
    "ppl_zfull": PathSpec("z", "full", True),
    "ppl_wfull": PathSpec("w", "full", True),
    "ppl_zend": PathSpec("z", "end", True),
    "ppl_wend": PathSpec("w", "end", True),
    "ppl2_wend": PathSpec("w", "end", False),
}


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of the directions of a and b [N, D] at t [N, 1] (unit-length result)."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    d = (a * b).sum(dim=-1, keepdim=True)
    p = t * torch.acos(d.clamp(-1, 1))
    c = b - d * a
    c = c / c.norm(dim=-1, keepdim=True)
    out = a * torch.cos(p) + c * torch.sin(p)
    return out / out.norm(dim=-1, keepdim=True)


def path_endpoints(
    G: torch.nn.Module, spec: PathSpec, z: torch.Tensor, c: torch.Tensor, t: torch.Tensor, epsilon: float
) -> torch.Tensor:
    """ws [2N, num_ws, w_dim]: the path at t (first N) and at t + epsilon (last N)."""
    z0, z1 = z.chunk(2)
    t = t[:, None]
    if spec.space == "w":
        w0, w1 = G.mapping(z, torch.cat([c, c])).chunk(2)
        t = t[:, :, None].to(w0.dtype)
        return torch.cat([w0.lerp(w1, t), w0.lerp(w1, t + epsilon)])
    zt = torch.cat([slerp(z0, z1, t), slerp(z0, z1, t + epsilon)])
    return G.mapping(zt, torch.cat([c, c]))


def crop_and_downsample(img: torch.Tensor, crop: bool) -> torch.Tensor:
    """The official crop (rows 3/8-7/8, columns 2/8-6/8) and a box downsample to at most 256 px."""
    if crop:
        e = img.shape[2] // 8
        img = img[:, :, e * 3 : e * 7, e * 2 : e * 6]
    factor = img.shape[2] // DOWNSAMPLE_SIZE
    if factor > 1:
        img = torch.nn.functional.avg_pool2d(img, factor)
    return img


@torch.no_grad()
def path_lengths(
    opts: MetricOptions, detector: Detector, spec: PathSpec, num_samples: int, epsilon: float = EPSILON
) -> np.ndarray:
    """d = |f(t + eps) - f(t)|^2 / eps^2 per sample [num_samples], float64."""
    G = copy.deepcopy(opts.G).eval().requires_grad_(False).to(opts.device)  # its noise maps are redrawn
    noise = [buf for name, buf in G.synthesis.named_buffers() if name.endswith("noise_const")]
    generator = torch.Generator().manual_seed(opts.seed)
    labels = torch.from_numpy(sample_labels(opts, num_samples, None, np.random.RandomState(opts.seed)))
    out = []
    bar = progress_bar(opts, num_samples, "ppl")
    for start in range(0, num_samples, opts.batch_gen):
        n = min(opts.batch_gen, num_samples - start)
        t = torch.rand([n], generator=generator) * (spec.sampling == "full")
        z = torch.randn([2 * n, G.z_dim], generator=generator)
        for buf in noise:
            buf.copy_(torch.randn(buf.shape, generator=generator))
        ws = path_endpoints(
            G, spec, z.to(opts.device), labels[start : start + n].to(opts.device), t.to(opts.device), epsilon
        )
        img = G.synthesis(ws, noise_mode="const", force_fp32=True)
        img = crop_and_downsample((img + 1) * (255 / 2), spec.crop)
        f0, f1 = detector.extract(img).chunk(2)
        out.append((squared_distance(f0, f1).double() / epsilon**2).cpu())
        bar.update(n)
    bar.close()
    return torch.cat(out).numpy()


def filtered_mean(distances: np.ndarray) -> float:
    """Mean of the distances between the 1st (lower) and 99th (higher) percentile, as officially."""
    lo = np.percentile(distances, 1, method="lower")
    hi = np.percentile(distances, 99, method="higher")
    return float(distances[(distances >= lo) & (distances <= hi)].mean())


def compute_ppl(
    opts: MetricOptions, detector: Detector, spec: PathSpec, num_samples: int = NUM_SAMPLES, epsilon: float = EPSILON
) -> float:
    if opts.G is None:
        raise ValueError("perceptual path length needs a generator")
    return filtered_mean(path_lengths(opts, detector, spec, num_samples, epsilon))

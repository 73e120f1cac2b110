"""Fréchet distance between Gaussian fits of two feature sets (FID with Inception features, or any detector).

FID = |mu_g - mu_r|^2 + Tr(S_g + S_r - 2 (S_g S_r)^(1/2)). The trace of the matrix square root is taken as the sum
of the square roots of the eigenvalues of S_r^(1/2) S_g S_r^(1/2), which is symmetric positive semi-definite and has
the same eigenvalues as S_g S_r; this avoids the complex round-off of a general sqrtm.
"""

from __future__ import annotations

import numpy as np

from metrics.detectors import Detector
from metrics.metric_utils import MetricOptions, compute_feature_stats_for_dataset, compute_feature_stats_for_evaluated


def psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a positive semi-definite matrix (negative round-off eigenvalues clipped to 0)."""
    values, vectors = np.linalg.eigh((sigma + sigma.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(
            f"mismatched statistics: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}"
        )
    root1 = psd_sqrt(sigma1)
    cross = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    trace_sqrt = np.sqrt(np.clip(cross, 0, None)).sum()
    return float(np.square(mu1 - mu2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def compute_fid(
    opts: MetricOptions,
    detector: Detector,
    *,
    num_gen: int,
    max_real: int | None,
    full: bool,
    class_index: int | None = None,
) -> float:
    """FID between the (cached) real statistics and `num_gen` evaluated images (generated, or of dataset2)."""
    real = compute_feature_stats_for_dataset(
        opts, detector, max_items=max_real, full=full, class_index=class_index, capture_mean_cov=True
    )
    gen = compute_feature_stats_for_evaluated(
        opts, detector, num_gen=num_gen, class_index=class_index, capture_mean_cov=True
    )
    return frechet_distance(*gen.get_mean_cov(), *real.get_mean_cov())

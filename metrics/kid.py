"""Kernel Inception Distance: an unbiased estimate of the squared MMD with the kernel k(x, y) = (x.y / d + 1)^3.

The estimate is averaged over `num_subsets` random subsets of at most `max_subset_size` real and generated
features (the official kid50k_full uses 100 subsets of 1000).
"""

from __future__ import annotations

import numpy as np

from metrics.detectors import Detector
from metrics.metric_utils import MetricOptions, compute_feature_stats_for_dataset, compute_feature_stats_for_evaluated


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(x.y / d + 1)^3 for all pairs of rows."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 of two equal-size samples: within-set kernel means without the diagonal, minus 2x the cross."""
    m = x.shape[0]
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2 * kxy.sum() / (m * m))


def kernel_inception_distance(
    real: np.ndarray, gen: np.ndarray, num_subsets: int = 100, max_subset_size: int = 1000, seed: int = 0
) -> float:
    """Mean unbiased MMD^2 over seeded random subsets (drawn without replacement within a subset)."""
    real, gen = np.asarray(real, np.float64), np.asarray(gen, np.float64)
    m = min(real.shape[0], gen.shape[0], max_subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 real and 2 generated features, got {real.shape[0]} and {gen.shape[0]}")
    rng = np.random.RandomState(seed)
    total = 0.0
    for _ in range(num_subsets):
        x = gen[rng.choice(gen.shape[0], m, replace=False)]
        y = real[rng.choice(real.shape[0], m, replace=False)]
        total += unbiased_mmd2(x, y)
    return total / num_subsets


def compute_kid(
    opts: MetricOptions,
    detector: Detector,
    *,
    num_gen: int,
    max_real: int | None,
    full: bool,
    num_subsets: int = 100,
    max_subset_size: int = 1000,
    class_index: int | None = None,
) -> float:
    """KID between real features (cached) and `num_gen` evaluated ones (generated, or from the second dataset)."""
    real = compute_feature_stats_for_dataset(
        opts, detector, max_items=max_real, full=full, class_index=class_index, capture_all=True
    )
    gen = compute_feature_stats_for_evaluated(
        opts, detector, num_gen=num_gen, class_index=class_index, capture_all=True
    )
    return kernel_inception_distance(real.get_all(), gen.get_all(), num_subsets, max_subset_size, opts.seed)

"""Improved precision and recall (Kynkäänniemi et al. 2019): k-NN balls around each feature set.

Each point's radius is the distance to its k-th nearest neighbour in its own set, the point itself excluded
(i.e. the (k+1)-th smallest distance including the zero to itself). Precision is the share of generated points
inside at least one real ball; recall the share of real points inside at least one generated ball. As in the
official metric (pr50k3_full: k = 3, up to 200k reals against 50k fakes, so the real balls are the smaller ones),
features are rounded to float16 and so are the distances, radii included: a probe counts as inside when its
distance and the radius round to the same float16 (about 3 significant digits). We compute the distances in
float32 from the float16 features, in blocks (the block size changes nothing), and round them once.
"""

from __future__ import annotations

import numpy as np
import torch

from metrics.detectors import Detector
from metrics.metric_utils import MetricOptions, compute_feature_stats_for_dataset, compute_feature_stats_for_evaluated


def distances(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Euclidean distances [R, C], rounded to float16 as the official metric keeps them (returned as float32)."""
    return torch.cdist(rows, cols).to(torch.float16).to(torch.float32)


def knn_radii(features: torch.Tensor, k: int, block: int = 4096) -> torch.Tensor:
    """Distance from each row to its k-th nearest other row [N]."""
    if features.shape[0] <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} points per set, got {features.shape[0]}")
    radii = [
        distances(features[start : start + block], features).kthvalue(k + 1, dim=1).values
        for start in range(0, features.shape[0], block)
    ]
    return torch.cat(radii)


def share_inside(probe: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, block: int = 4096) -> float:
    """Fraction of `probe` rows within `radii[j]` of some `centres[j]` (boundary included)."""
    inside = [
        (distances(probe[start : start + block], centres) <= radii[None, :]).any(dim=1)
        for start in range(0, probe.shape[0], block)
    ]
    return float(torch.cat(inside).to(torch.float64).mean())


def precision_recall(
    real: np.ndarray, gen: np.ndarray, k: int = 3, device: torch.device | str = "cpu"
) -> tuple[float, float]:
    """(precision, recall) of generated features against real ones with k-NN radius."""
    real_t = torch.from_numpy(np.asarray(real)).to(device, torch.float16).to(torch.float32)
    gen_t = torch.from_numpy(np.asarray(gen)).to(device, torch.float16).to(torch.float32)
    precision = share_inside(gen_t, real_t, knn_radii(real_t, k))
    recall = share_inside(real_t, gen_t, knn_radii(gen_t, k))
    return precision, recall


def compute_pr(
    opts: MetricOptions,
    detector: Detector,
    *,
    num_gen: int,
    max_real: int | None,
    full: bool,
    nhood_size: int = 3,
    class_index: int | None = None,
) -> tuple[float, float]:
    """Precision and recall of `num_gen` evaluated images (generated, or of dataset2) against the real features."""
    real = compute_feature_stats_for_dataset(
        opts, detector, max_items=max_real, full=full, class_index=class_index, capture_all=True
    )
    gen = compute_feature_stats_for_evaluated(
        opts, detector, num_gen=num_gen, class_index=class_index, capture_all=True
    )
    return precision_recall(real.get_all(), gen.get_all(), nhood_size, opts.device)

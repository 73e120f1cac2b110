"""Inception Score: exp(E_x KL(p(y|x) || p(y))), mean and standard deviation over splits of the samples.

As officially defined (is50k: 10 splits): split i holds samples [i * N // S, (i + 1) * N // S), p(y) is the mean
prediction within the split, and the score is the mean (and population std) over splits of the per-split exp(KL).
"""

from __future__ import annotations

import numpy as np
from scipy.special import xlogy

from metrics.detectors import Detector
from metrics.metric_utils import MetricOptions, compute_feature_stats_for_evaluated


def inception_score(probs: np.ndarray, num_splits: int = 10) -> tuple[float, float]:
    """(mean, std) of the IS of `num_splits` contiguous splits of class probabilities [N, classes]."""
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2 or probs.shape[0] < num_splits:
        raise ValueError(f"IS needs [N >= {num_splits}, classes] probabilities, got shape {probs.shape}")
    n = probs.shape[0]
    scores = []
    for i in range(num_splits):
        # The official boundaries; np.array_split would put the N % S longer splits first instead.
        part = probs[i * n // num_splits : (i + 1) * n // num_splits]
        marginal = part.mean(axis=0, keepdims=True)
        # xlogy(0, .) = 0: classes that a sample gives zero probability contribute nothing to its KL term.
        kl = (xlogy(part, part) - xlogy(part, marginal)).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def compute_is(opts: MetricOptions, detector: Detector, *, num_gen: int, num_splits: int = 10) -> tuple[float, float]:
    """IS of `num_gen` evaluated images, generated or of dataset2 (the detector returns class probabilities)."""
    gen = compute_feature_stats_for_evaluated(opts, detector, num_gen=num_gen, capture_all=True)
    return inception_score(gen.get_all(), num_splits)

"""metrics.kid: the unbiased MMD^2 against a brute-force double sum, and KID near 0 on equal distributions."""

import numpy as np
import pytest

from metrics.kid import kernel_inception_distance, unbiased_mmd2


def brute_force_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    d, m = x.shape[1], x.shape[0]
    k = lambda a, b: (float(np.dot(a, b)) / d + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_unbiased_mmd2_matches_the_double_sum():
    rng = np.random.RandomState(0)
    x, y = rng.randn(9, 5), rng.randn(9, 5) + 0.5
    assert unbiased_mmd2(x, y) == pytest.approx(brute_force_mmd2(x, y), rel=1e-12)


def test_kid_is_unbiased_on_equal_distributions():
    # The mean over independent draws is within 4 standard errors of 0 (a biased V-statistic would sit well
    # above: its bias here is about +2 * E k(x,x) / m, far outside this band).
    values = []
    for seed in range(40):
        rng = np.random.RandomState(seed)
        values.append(kernel_inception_distance(rng.randn(60, 8), rng.randn(60, 8), num_subsets=5,
                                                max_subset_size=30, seed=seed))
    values = np.array(values)
    stderr = values.std(ddof=1) / np.sqrt(values.size)
    assert abs(values.mean()) < 4 * stderr
    rng = np.random.RandomState(99)
    x = rng.randn(30, 8)
    biased_excess = (np.mean([(x[i] @ x[i] / 8 + 1) ** 3 for i in range(30)]) - 1) * 2 / 30
    assert biased_excess > 10 * stderr


def test_kid_is_positive_for_different_distributions():
    rng = np.random.RandomState(3)
    assert kernel_inception_distance(rng.randn(100, 8), rng.randn(100, 8) + 1, num_subsets=10,
                                     max_subset_size=50) > 0.5


def test_kid_needs_two_points():
    with pytest.raises(ValueError, match="at least 2"):
        kernel_inception_distance(np.zeros((1, 3)), np.zeros((5, 3)))

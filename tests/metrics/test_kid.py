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
        values.append(
            kernel_inception_distance(rng.randn(60, 8), rng.randn(60, 8), num_subsets=5, max_subset_size=30, seed=seed)
        )
    values = np.array(values)
    stderr = values.std(ddof=1) / np.sqrt(values.size)
    assert abs(values.mean()) < 4 * stderr
    rng = np.random.RandomState(99)
    x = rng.randn(30, 8)
    biased_excess = (np.mean([(x[i] @ x[i] / 8 + 1) ** 3 for i in range(30)]) - 1) * 2 / 30
    assert biased_excess > 10 * stderr


def reference_kid(real: np.ndarray, gen: np.ndarray, num_subsets: int, max_subset_size: int, seed: int) -> float:
    """The official estimator written out: subsets of m = min(#real, #gen, max_subset_size), generated then real
    drawn without replacement from one RandomState; per subset, with K the cubic kernel,
    [sum_{i!=j} K(x_i, x_j) + sum_{i!=j} K(y_i, y_j)] / (m (m - 1)) - 2 sum_{i,j} K(x_i, y_j) / m^2; the mean."""
    m = min(len(real), len(gen), max_subset_size)
    rng = np.random.RandomState(seed)
    total = 0.0
    for _ in range(num_subsets):
        x = gen[rng.choice(len(gen), m, replace=False)]
        y = real[rng.choice(len(real), m, replace=False)]
        total += brute_force_mmd2(x, y)
    return total / num_subsets


@pytest.mark.parametrize("num_real, num_gen, max_subset_size", [(40, 25, 1000), (40, 25, 10), (12, 30, 1000)])
def test_kid_matches_the_official_subset_estimator(num_real, num_gen, max_subset_size):
    rng = np.random.RandomState(num_real + max_subset_size)
    real, gen = rng.randn(num_real, 4), rng.randn(num_gen, 4) * 1.2 + 0.3
    ours = kernel_inception_distance(real, gen, num_subsets=7, max_subset_size=max_subset_size, seed=3)
    # Float64 sums of at most 40 x 40 kernel values of order 10, in another order: ~1e-13 absolute.
    assert ours == pytest.approx(reference_kid(real, gen, 7, max_subset_size, 3), rel=0, abs=1e-10)
    assert abs(ours - reference_kid(real, gen, 7, max_subset_size + 1 if max_subset_size < 25 else 5, 3)) > 1e-6


def test_kid_is_positive_for_different_distributions():
    rng = np.random.RandomState(3)
    assert kernel_inception_distance(rng.randn(100, 8), rng.randn(100, 8) + 1, num_subsets=10, max_subset_size=50) > 0.5


def test_kid_needs_two_points():
    with pytest.raises(ValueError, match="at least 2"):
        kernel_inception_distance(np.zeros((1, 3)), np.zeros((5, 3)))

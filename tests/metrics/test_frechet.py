"""metrics.frechet: FID of a set with itself, closed forms for Gaussians, and a scipy.linalg.sqrtm reference."""

import numpy as np
import pytest
import scipy.linalg

from metrics.frechet import frechet_distance, psd_sqrt
from metrics.metric_utils import FeatureStats


def random_spd(rng: np.random.RandomState, d: int) -> np.ndarray:
    a = rng.randn(d, d)
    return a @ a.T / d + 0.1 * np.eye(d)


def test_fid_of_a_feature_set_with_itself_is_zero():
    stats = FeatureStats(capture_mean_cov=True)
    stats.append(np.random.RandomState(0).randn(500, 16) * 3 + 1)
    mu, sigma = stats.get_mean_cov()
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-9


def test_diagonal_gaussians_match_the_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2))
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(1 + 6.25 + 4 + 1, rel=1e-12)


def test_full_covariances_match_the_sqrtm_formula():
    rng = np.random.RandomState(1)
    mu1, mu2 = rng.randn(12), rng.randn(12)
    s1, s2 = random_spd(rng, 12), random_spd(rng, 12)
    reference = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-9)
    # Symmetric in its two arguments.
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(reference, rel=1e-9)


def test_psd_sqrt_squares_back():
    s = random_spd(np.random.RandomState(2), 7)
    root = psd_sqrt(s)
    np.testing.assert_allclose(root @ root, s, atol=1e-12)
    np.testing.assert_allclose(root, root.T, atol=1e-14)


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="mismatched statistics"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))

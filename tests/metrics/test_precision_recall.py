"""metrics.precision_recall: point clouds with a known overlap, and a brute-force numpy reference."""

import numpy as np
import pytest
import torch

from metrics.precision_recall import knn_radii, precision_recall


def brute_force_pr(real: np.ndarray, gen: np.ndarray, k: int) -> tuple[float, float]:
    def radii(a):
        d = np.sqrt(((a[:, None, :] - a[None, :, :]) ** 2).sum(-1))
        return np.sort(d, axis=1)[:, k]  # column 0 is the point itself

    def inside(probe, centres, r):
        d = np.sqrt(((probe[:, None, :] - centres[None, :, :]) ** 2).sum(-1))
        return float((d <= r[None, :]).any(axis=1).mean())

    return inside(gen, real, radii(real)), inside(real, gen, radii(gen))


def test_shifted_grids_overlap_by_half():
    # Grid spacing 1 -> every k=1 radius is 1; the generated grid is shifted by 50.25 (exact in float16), so
    # exactly the 50 points on each side of the overlap are covered.
    real = np.arange(100, dtype=np.float32)[:, None]
    gen = real + 50.25
    assert precision_recall(real, gen, k=1) == (0.5, 0.5)
    assert precision_recall(real, real.copy(), k=1) == (1.0, 1.0)


def test_matches_brute_force_on_random_clouds():
    rng = np.random.RandomState(0)
    real = rng.randn(150, 3).astype(np.float16).astype(np.float32)
    gen = (rng.randn(120, 3) * 1.5 + 0.7).astype(np.float16).astype(np.float32)
    precision, recall = precision_recall(real, gen, k=3)
    ref_precision, ref_recall = brute_force_pr(real.astype(np.float64), gen.astype(np.float64), 3)
    assert precision == pytest.approx(ref_precision, abs=1 / 120 + 1e-12)  # at most one boundary tie flips
    assert recall == pytest.approx(ref_recall, abs=1 / 150 + 1e-12)
    assert 0.2 < precision < 1 and 0.2 < recall < 1


def test_radius_is_the_kth_true_neighbour_and_blocks_agree():
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    assert knn_radii(x, 1).tolist() == [1.0, 1.0, 2.0, 4.0]
    assert knn_radii(x, 2).tolist() == [3.0, 2.0, 3.0, 6.0]
    assert knn_radii(x, 2, block=3).tolist() == [3.0, 2.0, 3.0, 6.0]
    with pytest.raises(ValueError, match="more than 4 points"):
        knn_radii(x, 4)

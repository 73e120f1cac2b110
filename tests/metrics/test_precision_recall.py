"""metrics.precision_recall: point clouds with a known overlap, and a brute-force numpy reference."""

import numpy as np
import pytest
import torch

from metrics.precision_recall import knn_radii, precision_recall


def brute_force_pr(real: np.ndarray, gen: np.ndarray, k: int) -> tuple[float, float]:
    """The official definition in float64: features and distances rounded to float16, the radius of a point the
    (k+1)-th smallest distance to its own set (itself included), a probe inside when distance <= radius."""

    def dist(a, b):
        a, b = a.astype(np.float16).astype(np.float64), b.astype(np.float16).astype(np.float64)
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)).astype(np.float16)

    def inside(probe, centres):
        radii = np.sort(dist(centres, centres), axis=1)[:, k]
        return float((dist(probe, centres) <= radii[None, :]).any(axis=1).mean())

    return inside(gen, real), inside(real, gen)


def test_shifted_grids_overlap_by_half():
    # Grid spacing 1 -> every k=1 radius is 1; the generated grid is shifted by 50.25 (exact in float16), so
    # exactly the 50 points on each side of the overlap are covered.
    real = np.arange(100, dtype=np.float32)[:, None]
    gen = real + 50.25
    assert precision_recall(real, gen, k=1) == (0.5, 0.5)
    assert precision_recall(real, real.copy(), k=1) == (1.0, 1.0)


def test_matches_the_official_definition_on_random_clouds():
    # Integer features: every squared distance is an exact integer in float32 (< 2^24) and float64, and IEEE sqrt
    # is correctly rounded, so ours and the reference round the same distances to float16 on every machine.
    # 200 reals against 120 fakes, as the official 200k against 50k: the real balls are the smaller ones.
    rng = np.random.RandomState(0)
    real = rng.randint(-30, 31, size=(200, 3)).astype(np.float32)
    gen = rng.randint(-40, 41, size=(120, 3)).astype(np.float32)
    precision, recall = precision_recall(real, gen, k=3)
    assert (precision, recall) == brute_force_pr(real, gen, 3)
    assert 0.2 < precision < 1 and 0.2 < recall < 1


def test_distances_and_radii_are_compared_in_float16_as_officially():
    # k=1: both real radii are 1000. The fake (2000, 1) is 1000.0005 from the real (1000, 0), which float16 rounds
    # to 1000 (its spacing there is 0.5): inside, as in the official metric, though outside in exact arithmetic.
    # Symmetrically for recall. Exact distances would give (0, 0).
    real = np.array([[0, 0], [1000, 0]], np.float32)
    gen = np.array([[2000, 1], [3000, 1]], np.float32)
    assert precision_recall(real, gen, k=1) == (0.5, 0.5)
    assert brute_force_pr(real, gen, 1) == (0.5, 0.5)


def test_radius_is_the_kth_true_neighbour_and_blocks_agree():
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    assert knn_radii(x, 1).tolist() == [1.0, 1.0, 2.0, 4.0]
    assert knn_radii(x, 2).tolist() == [3.0, 2.0, 3.0, 6.0]
    assert knn_radii(x, 2, block=3).tolist() == [3.0, 2.0, 3.0, 6.0]
    with pytest.raises(ValueError, match="more than 4 points"):
        knn_radii(x, 4)

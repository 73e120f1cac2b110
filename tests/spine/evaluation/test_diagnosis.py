"""spine.evaluation.diagnosis: occlusion maps against a brute-force reference on a scorer with a known receptive
field."""

import numpy as np
import pytest
import torch

from spine.evaluation import diagnosis


def region_scorer(images: torch.Tensor) -> torch.Tensor:
    """Score = mean grey level of rows 2-5, columns 8-11 (a lesion detector that looks only there)."""
    return images[:, :, 2:6, 8:12].double().mean(dim=(1, 2, 3))


def brute_force_map(images: np.ndarray, patch: int, stride: int) -> np.ndarray:
    """The same average of score drops, one image and one patch at a time, in float64."""
    n, _, h, w = images.shape
    total, cover = np.zeros((h, w)), np.zeros((h, w))
    for t in range(0, h - patch + 1, stride):
        for left in range(0, w - patch + 1, stride):
            drops = []
            for img in images:
                occluded = img.copy()
                occluded[:, t : t + patch, left : left + patch] = np.round(img.astype(np.float64).mean())
                drops.append(img[:, 2:6, 8:12].astype(np.float64).mean() - occluded[:, 2:6, 8:12].mean())
            total[t : t + patch, left : left + patch] += np.mean(drops)
            cover[t : t + patch, left : left + patch] += 1
    return total / cover


def test_occlusion_map_matches_brute_force_and_lights_up_the_receptive_field():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 120, (5, 1, 16, 16)).astype(np.uint8)
    images[:, :, 2:6, 8:12] = 230  # a bright "lesion" inside the scorer's field
    occ = diagnosis.occlusion_map(region_scorer, torch.from_numpy(images), patch=4, stride=2, batch=7)
    # float64 sums of at most 16x16 uint8 values: exact up to rounding of ~1e-12.
    np.testing.assert_allclose(occ, brute_force_map(images, 4, 2), atol=1e-9)
    assert occ[3, 9] > 50 and occ[14, 1] == 0.0  # occluding the lesion drops the score; far away nothing
    assert diagnosis.map_correlation(occ, occ) == pytest.approx(1.0)
    assert diagnosis.map_correlation(occ, np.zeros_like(occ)) is None
    with pytest.raises(ValueError, match="patch"):
        diagnosis.occlusion_map(region_scorer, torch.from_numpy(images), patch=20)

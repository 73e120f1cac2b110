"""Clipping bound, per-unit sums and the Gaussian noise's standard deviation."""

import math

import pytest
import torch
from tolerances import rounding_tol

from spine.dp import mechanism
from spine.dp.mechanism import MechanismConfig


def random_rows(n: int, scale: float = 10.0) -> dict:
    g = torch.Generator().manual_seed(n)
    return {
        "w": torch.randn(n, 3, 4, generator=g, dtype=torch.float64) * scale,
        "b": torch.randn(n, 3, generator=g, dtype=torch.float64) * scale,
    }


def test_every_clipped_row_norm_within_bound():
    rows = random_rows(50)
    rows["w"][7] = 1e-3  # a small row must pass unchanged
    rows["b"][7] = 0
    clipped, norms = mechanism.clip_rows(rows, max_norm=1.5)
    clipped_norms = mechanism.per_row_norms(clipped)
    assert (clipped_norms <= 1.5).all()
    big = norms > 1.5
    # float32: scale by 1.5 / norm, then a 16-term sum of squares and a sqrt (~20 roundings, relative).
    assert torch.allclose(
        clipped_norms[big], torch.full_like(clipped_norms[big], 1.5), rtol=rounding_tol(torch.float32, 20), atol=0
    )
    assert torch.equal(clipped["w"][7], rows["w"][7])
    # Direction is kept: clipped = row * positive factor.
    assert torch.allclose(
        clipped["w"][3] / rows["w"][3],
        (clipped["b"][3] / rows["b"][3])[0].expand(3, 4),
        rtol=rounding_tol(torch.float32, 4),
        atol=0,
    )  # one product and one division each


def test_flat_norm_spans_all_parameters():
    rows = {"a": torch.tensor([[3.0]]), "b": torch.tensor([[4.0]])}
    assert mechanism.per_row_norms(rows).item() == 5.0  # exact: 9 + 16 and its sqrt are exact in float32


def test_clipped_sum_bounds_each_unit_not_each_image():
    rows = {"w": torch.tensor([[3.0, 0.0], [3.0, 0.0], [0.0, 4.0]], dtype=torch.float64)}
    unit_index = torch.tensor([0, 0, 1])  # images 0 and 1 are one study: summed (norm 6) before clipping to 1
    total, norms = mechanism.clipped_sum(rows, unit_index, 2, MechanismConfig(max_grad_norm=1.0, noise_multiplier=0))
    assert torch.allclose(norms, torch.tensor([6.0, 4.0], dtype=torch.float64))
    assert torch.allclose(total["w"], torch.tensor([1.0, 1.0], dtype=torch.float64))


def test_nan_rows_stay_bounded():
    rows = {"w": torch.tensor([[float("nan"), float("inf")], [1.0, 0.0]])}
    total, _ = mechanism.clipped_sum(rows, torch.tensor([0, 1]), 2, MechanismConfig(1.0, 0.0))
    assert torch.isfinite(total["w"]).all()
    assert mechanism.per_row_norms({"w": total["w"][None]}).item() <= 2.0 + 1e-6


def test_clip_off_keeps_rows():
    rows = random_rows(4)
    total, _ = mechanism.clipped_sum(rows, torch.arange(4), 4, MechanismConfig(1.0, 1.0, clip=False))
    # float32 sums of 4 rows, maybe in another order: 4 roundings on sum |rows|.
    assert torch.allclose(
        total["w"], rows["w"].sum(0), rtol=0, atol=rounding_tol(torch.float32, 4, rows["w"].abs().sum(0).max().item())
    )


def test_noise_has_stated_std():
    config = MechanismConfig(max_grad_norm=1.5, noise_multiplier=0.8)
    torch.manual_seed(0)
    zeros = {"w": torch.zeros(200_000, dtype=torch.float64)}
    noisy = mechanism.add_noise(zeros, config)["w"]
    std = 0.8 * 1.5
    n = noisy.numel()
    # Sample std of n normals: relative standard error ~ 1/sqrt(2n) = 0.0016; 5 sigma bound.
    assert abs(noisy.std().item() / std - 1) < 5 / math.sqrt(2 * n)
    assert abs(noisy.mean().item()) < 5 * std / math.sqrt(n)
    assert mechanism.add_noise(zeros, MechanismConfig(1.5, 0.8, noise=False))["w"].abs().max() == 0


def test_config_validation_and_privacy_label():
    assert MechanismConfig(1.0, 1.0).is_private
    assert not MechanismConfig(1.0, 1.0, clip=False).is_private
    assert not MechanismConfig(1.0, 1.0, noise=False).is_private
    with pytest.raises(ValueError, match="--dp-max-grad-norm"):
        MechanismConfig(0.0, 1.0)


@pytest.mark.parametrize(
    "units, max_rows, expected",
    [
        ([0, 1, 2, 3, 4], 2, [(0, 2), (2, 4), (4, 5)]),
        ([0, 0, 1, 1, 1, 2], 3, [(0, 2), (2, 5), (5, 6)]),
        ([0, 0, 0, 0, 1], 2, [(0, 4), (4, 5)]),  # a unit larger than max_rows gets a slice of its own
        ([0, 1, 1], 8, [(0, 3)]),
        ([], 2, []),
    ],
)
def test_unit_chunks_keep_units_whole_and_bounded(units, max_rows, expected):
    chunks = mechanism.unit_chunks(torch.tensor(units, dtype=torch.int64), max_rows)
    assert [(c.start, c.stop) for c in chunks] == expected
    with pytest.raises(ValueError, match="--dp-physical-batch"):
        mechanism.unit_chunks(torch.tensor(units, dtype=torch.int64), 0)

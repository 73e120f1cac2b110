"""Perceptual path length: the closed form of a generator linear in w, slerp's geometry, the percentile filter,
and the detector rule (NVIDIA's VGG16 or a clear refusal naming the _pixel fallback)."""

import math

import numpy as np
import pytest
import torch
from tolerances import rounding_tol

from metrics import metric_main
from metrics.detectors import DetectorUnavailable
from metrics.metric_names import parse_metric
from metrics.metric_utils import MetricOptions
from metrics.perceptual import pixel_distance, pixel_pyramid_features
from metrics.perceptual_path_length import EPSILON, VARIANTS, filtered_mean, path_lengths, slerp

SEEN: list[torch.Tensor] = []  # every z given to a RecordingMapping (module-level: the metric copies G)


class RecordingMapping(torch.nn.Module):
    """w = z in float64, broadcast to num_ws; records every z it is given in SEEN."""

    def __init__(self, num_ws: int):
        super().__init__()
        self.num_ws = num_ws

    def forward(self, z, c):
        SEEN.append(z.clone())
        return z.double()[:, None, :].repeat(1, self.num_ws, 1)


class ConstantImage(torch.nn.Module):
    """A synthesis linear in w: every pixel of the image is a . w (float64)."""

    def __init__(self, a: torch.Tensor, resolution: int):
        super().__init__()
        self.a, self.resolution = a, resolution

    def forward(self, ws, noise_mode="const", force_fp32=False):
        value = ws[:, 0, :] @ self.a
        return value[:, None, None, None].expand(-1, 1, self.resolution, self.resolution)


class LinearGenerator(torch.nn.Module):
    def __init__(self, a: torch.Tensor, resolution: int = 16, num_ws: int = 3):
        super().__init__()
        self.z_dim = self.w_dim = a.numel()
        self.c_dim, self.num_ws, self.img_channels, self.img_resolution = 0, num_ws, 1, resolution
        self.mapping = RecordingMapping(num_ws)
        self.synthesis = ConstantImage(a, resolution)


@pytest.mark.parametrize("name", ["ppl2_wend", "ppl_wend", "ppl_wfull"])
def test_linear_generator_has_the_closed_form(name):
    # For image = (a . w) everywhere, the pixel distance of two images is the square of their value difference, so
    # d = (a . (w1 - w0) eps)^2 / eps^2 = (a . (w1 - w0))^2 for every t, epsilon and crop.
    a = torch.tensor([0.3, -0.2, 0.5, 0.1], dtype=torch.float64)
    G = LinearGenerator(a)
    SEEN.clear()
    opts = MetricOptions(G=G, progress=False, seed=5, batch_gen=3)
    d = path_lengths(opts, pixel_distance(), VARIANTS[name], num_samples=10)
    z = torch.cat([torch.stack(chunk.double().chunk(2)) for chunk in SEEN], dim=1)  # [2, N, z_dim]
    expected = ((z[1] - z[0]) @ a).square().numpy()
    assert d.shape == (10,)
    np.testing.assert_allclose(d, expected, rtol=rounding_tol(torch.float64, 64) / EPSILON, atol=0)


def test_slerp_moves_along_the_great_circle_at_constant_speed():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 5, 6, generator=gen, dtype=torch.float64)
    angle = torch.acos((a / a.norm(dim=1, keepdim=True) * b / b.norm(dim=1, keepdim=True)).sum(1))
    t = torch.full([5, 1], 0.3, dtype=torch.float64)
    tol = rounding_tol(torch.float64, 64)
    torch.testing.assert_close(slerp(a, b, torch.zeros_like(t)), a / a.norm(dim=1, keepdim=True), atol=tol, rtol=0)
    torch.testing.assert_close(slerp(a, b, torch.ones_like(t)), b / b.norm(dim=1, keepdim=True), atol=tol, rtol=0)
    p, q = slerp(a, b, t), slerp(a, b, t + 0.5)
    torch.testing.assert_close(p.norm(dim=1), torch.ones(5, dtype=torch.float64), atol=tol, rtol=0)
    torch.testing.assert_close(torch.acos((p * q).sum(1).clamp(-1, 1)), 0.5 * angle, atol=1e-6, rtol=0)


def test_filtered_mean_keeps_values_from_the_lower_1st_to_the_higher_99th_percentile():
    # 1000 values i^2: the 1st percentile (position 9.99, rounded down) is 9^2, the 99th (989.01, rounded up)
    # 990^2, so i = 9..990 are kept.
    values = np.random.RandomState(0).permutation(np.arange(1000, dtype=np.float64) ** 2)
    assert filtered_mean(values) == pytest.approx(np.mean(np.arange(9, 991, dtype=np.float64) ** 2), rel=1e-12)


def test_pixel_features_distance_is_the_mean_over_levels_of_the_mean_squared_difference():
    gen = torch.Generator().manual_seed(1)
    x, y = (torch.rand(2, 1, 16, 16, generator=gen, dtype=torch.float64) * 255).unbind(0)
    x, y = x[None], y[None]
    levels = [(x - y) / 127.5]
    while levels[-1].shape[2] > 8:
        levels.append(torch.nn.functional.avg_pool2d(levels[-1], 2))
    expected = sum(level.square().mean() for level in levels) / len(levels)
    got = (pixel_pyramid_features(x) - pixel_pyramid_features(y)).square().sum()
    assert math.isclose(float(got), float(expected), rel_tol=1e-12)


def test_the_registry_reports_the_pixel_variant_under_its_own_name(monkeypatch):
    from metrics import metric_names

    monkeypatch.setattr(metric_names, "PPL_SAMPLES", 12)
    a = torch.tensor([1.0, 2.0], dtype=torch.float64)
    SEEN.clear()
    result = metric_main.calc_metric("ppl_wend_pixel", G=LinearGenerator(a), dataset_kwargs={}, progress=False)
    z = torch.cat([torch.stack(chunk.double().chunk(2)) for chunk in SEEN], dim=1)
    expected = filtered_mean(((z[1] - z[0]) @ a).square().numpy())
    assert list(result.results) == ["ppl_wend_pixel"] and "pixel" in result.detector
    assert result.results["ppl_wend_pixel"] == pytest.approx(expected, rel=rounding_tol(torch.float64, 64) / EPSILON)


def test_official_names_parse_and_need_the_vgg16_detector(monkeypatch, tmp_path):
    assert parse_metric("ppl2_wend").kind == "ppl" and parse_metric("ppl2_wend").count == 50_000
    assert parse_metric("ppl_zfull_pixel").space == "pixel"
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path))
    G = LinearGenerator(torch.ones(4, dtype=torch.float64))
    with pytest.raises(DetectorUnavailable, match="ppl_zend_pixel"):
        metric_main.calc_metric("ppl_zend", G=G, dataset_kwargs={}, vgg16=str(tmp_path / "missing.pt"))

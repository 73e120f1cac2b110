"""Class-mean matching: the blur against scipy's, values against a float64 brute force, the unbiased gradient, the
real statistics (mirrored too), and the --class-mean-match option through train.py."""

import json
import os
import sys

import numpy as np
import pytest
import scipy.ndimage
import torch
from tolerances import rounding_tol
from torch import nn

import train
from spine.fidelity import options
from spine.fidelity.class_mean_match import ClassMeanMatch, RealClassMeans, gaussian_blur

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "clinical"))
from test_clinical_training import invoke, write_dataset  # noqa: E402


def _onehot(classes: list[int], num: int = 2) -> torch.Tensor:
    return nn.functional.one_hot(torch.tensor(classes), num).float()


@pytest.mark.parametrize("sigma", [0.0, 0.7, 1.5, 2.0, 3.0])  # 3.0: the kernel is wider than the image
def test_blur_is_scipys_gaussian_filter_with_edges_repeated(sigma):
    x = torch.rand(3, 2, 9, 11, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = np.stack([[scipy.ndimage.gaussian_filter(ch, sigma, mode="nearest") for ch in img] for img in x.numpy()])
    torch.testing.assert_close(gaussian_blur(x, sigma), torch.from_numpy(expected), rtol=0, atol=1e-12)


def _brute_force(img: torch.Tensor, classes: list[int], real: RealClassMeans, weight: float) -> torch.Tensor:
    """loss_i = weight * mean_pixels[(m_{c,-i} - r_c) (b_i - r_c)] / s^2, one image at a time, in float64."""
    b = torch.from_numpy(
        np.stack([[scipy.ndimage.gaussian_filter(ch, real.sigma, mode="nearest") for ch in im] for im in img.numpy()])
    )
    means = real.means.double()
    out = []
    for i, c in enumerate(classes):
        others = [j for j, k in enumerate(classes) if k == c and j != i]
        if not others:
            out.append(0.0)
            continue
        m = b[others].mean(0)
        out.append(float(((m - means[c]) * (b[i] - means[c])).mean()) / real.std**2 * weight)
    return torch.tensor(out, dtype=torch.float64)


def test_per_sample_loss_equals_a_float64_brute_force_and_a_lone_image_gets_none():
    g = torch.Generator().manual_seed(1)
    real = RealClassMeans(torch.rand(3, 1, 8, 8, generator=g) * 2 - 1, 0.4, 1.5, (5, 5, 5))
    img = torch.rand(6, 1, 8, 8, generator=g) * 2 - 1
    classes = [0, 0, 1, 0, 1, 2]  # class 2 alone: no estimate of its mean besides the image itself
    loss = ClassMeanMatch(real, 3.0)(img, _onehot(classes, 3))
    expected = _brute_force(img.double(), classes, real, 3.0)
    assert float(loss[5]) == 0.0
    torch.testing.assert_close(loss.double(), expected, rtol=0, atol=rounding_tol(torch.float32, 200, 3.0 / 0.16 * 4))


def test_gradient_moves_images_but_not_a_class_mean_that_matches_the_real_one():
    """Generated class means equal to the real ones: each class's gradients sum to zero however spread the images
    are (a batch-mean squared error would also pull them together)."""
    g = torch.Generator().manual_seed(2)
    img = (torch.rand(4, 1, 6, 6, generator=g) * 2 - 1).requires_grad_(True)
    blurred = gaussian_blur(img.detach(), 1.0)
    real = RealClassMeans(torch.stack([blurred[:2].mean(0), blurred[2:].mean(0)]), 0.5, 1.0, (2, 2))
    ClassMeanMatch(real, 1.0)(img, _onehot([0, 0, 1, 1])).sum().backward()
    grads = img.grad.flatten(1)
    tol = rounding_tol(torch.float32, 100)
    torch.testing.assert_close(grads[0] + grads[1], torch.zeros(36), rtol=0, atol=tol)
    torch.testing.assert_close(grads[2] + grads[3], torch.zeros(36), rtol=0, atol=tol)
    assert float(grads.abs().max()) > 100 * tol


def test_gradient_pulls_a_shifted_class_towards_the_real_mean():
    """Every image of class 0 brighter than the real mean by d: the loss is weight * d^2 / s^2 per image and its
    gradient is positive at every pixel, so a descent step darkens the images (blur and mean keep a constant image
    constant)."""
    real = RealClassMeans(torch.zeros(2, 1, 5, 5), 0.5, 1.5, (3, 3))
    img = torch.full((3, 1, 5, 5), 0.25, requires_grad=True)
    loss = ClassMeanMatch(real, 2.0)(img, _onehot([0, 0, 0]))
    torch.testing.assert_close(
        loss, torch.full((3,), 2.0 * 0.25**2 / 0.25), rtol=rounding_tol(torch.float32, 50), atol=0
    )
    loss.sum().backward()
    assert bool((img.grad > 0).all())


def test_real_means_are_blurred_class_means_in_generator_range_and_mirror_averages_flips():
    images = torch.randint(0, 256, (10, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    labels = torch.tensor([0, 1, 1, 0, 1, 0, 1, 1, 0, 1])
    real = RealClassMeans.from_images(images, labels, 2, 1.5)
    pixels = images.double().numpy() / 127.5 - 1
    blurred = np.stack([scipy.ndimage.gaussian_filter(p[0], 1.5, mode="nearest") for p in pixels])
    for c in (0, 1):
        expected = torch.from_numpy(blurred[labels.numpy() == c].mean(0))
        torch.testing.assert_close(real.means[c, 0].double(), expected, rtol=0, atol=rounding_tol(torch.float32, 4))
    assert real.counts == (4, 6) and real.std == pytest.approx(float(blurred.std(ddof=1)), rel=1e-12)
    mirrored = RealClassMeans.from_images(images, labels, 2, 1.5, mirror=True)
    torch.testing.assert_close(mirrored.means, (real.means + real.means.flip(-1)) / 2, rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="all 3 classes"):
        RealClassMeans.from_images(images, labels, 3, 1.5)


def test_the_term_starts_after_start_kimg_and_its_count_survives_a_checkpoint():
    """start 0.01 kimg = 10 images: calls on images 1-8 and 9-16 (the 10th is past the start) give 0 and then the
    loss; a restored count goes on from the checkpoint's, a missing one (a transfer) starts at 0."""
    real = RealClassMeans(torch.zeros(2, 1, 4, 4), 0.5, 1.0, (4, 4))
    img, labels = torch.full((8, 1, 4, 4), 0.25), _onehot([0] * 8)
    term = ClassMeanMatch(real, 1.0, start_kimg=0.01)
    assert torch.equal(term(img, labels), torch.zeros(8))
    assert float(term(img, labels).min()) > 0 and term.state_dict() == dict(images_seen=16)
    resumed = ClassMeanMatch(real, 1.0, start_kimg=0.01)
    resumed.load_state_dict(dict(images_seen=16))
    assert float(resumed(img, labels).min()) > 0
    resumed.load_state_dict(None)
    assert resumed.images_seen == 0 and torch.equal(resumed(img, labels), torch.zeros(8))
    with pytest.raises(ValueError, match="start >= 0 kimg"):
        ClassMeanMatch(real, 1.0, start_kimg=-1)


def test_refusals_of_the_term():
    real = RealClassMeans(torch.zeros(2, 1, 4, 4), 0.5, 1.0, (1, 1))
    with pytest.raises(ValueError, match="positive weight"):
        ClassMeanMatch(real, 0.0)
    with pytest.raises(ValueError, match=r"expected \[3, 2\] one-hot labels"):
        ClassMeanMatch(real, 1.0)(torch.zeros(3, 1, 4, 4), torch.zeros(3))
    with pytest.raises(ValueError, match=r"generated images of shape \(1, 8, 8\)"):
        ClassMeanMatch(real, 1.0)(torch.zeros(3, 1, 8, 8), _onehot([0, 1, 1]))


def test_the_option_reaches_the_run_and_builds_the_term_from_the_training_images(tmp_path, captured):
    assert "class_mean_match" in {p.name for p in train.main.params} and options.PLUGIN in train.PLUGINS
    data = write_dataset(str(tmp_path / "ds"))
    result = invoke(tmp_path, data, "--class-mean-match", "30", "--class-mean-blur", "1")
    assert result.exit_code == 0, result.output
    args = captured[0]
    assert args.run_dir.endswith("-meanmatch30") and args.class_mean_match == dict(
        weight=30.0, sigma=1.0, start_kimg=0.0
    )
    (term,) = train.build_plugins(args, "cpu").generator_terms
    assert isinstance(term, ClassMeanMatch) and term.weight == 30.0 and term.real.counts == (4, 4)
    expected = dict(weight=30.0, sigma=1.0, start_kimg=0.0, real_counts=[4, 4])
    assert term.snapshot_metadata()["class_mean_match"] == expected
    result = invoke(tmp_path, data, "--class-mean-match", "2", "--class-mean-start", "60")
    assert result.exit_code == 0 and captured[1].class_mean_match["sigma"] == options.DEFAULT_BLUR
    assert captured[1].run_dir.endswith("-meanmatch2from60") and captured[1].class_mean_match["start_kimg"] == 60.0
    (term,) = train.build_plugins(captured[1], "cpu").generator_terms
    assert term.start_kimg == 60.0


def test_a_multi_label_dataset_is_refused_before_training(tmp_path, captured):
    data = write_dataset(str(tmp_path / "ds"))
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    meta["labels"] = [[name, [1, 0, 1] if k % 2 else [0, 1, 0]] for k, (name, _label) in enumerate(meta["labels"])]
    meta.pop("spinegan")
    (tmp_path / "ds" / "dataset.json").write_text(json.dumps(meta))
    result = invoke(tmp_path, data, "--class-mean-match", "1")
    assert result.exit_code == 1 and "labels of several classes per image" in result.output, result.output
    assert not captured and not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--class-mean-match", "-1"], "--class-mean-match=-1.0: expected a positive weight"),
        (["--class-mean-match", "1", "--class-mean-blur", "-2"], "--class-mean-blur=-2.0: expected a Gaussian sd"),
        (["--class-mean-blur", "2"], "--class-mean-blur needs --class-mean-match"),
        (["--class-mean-start", "5"], "--class-mean-start needs --class-mean-match"),
        (["--class-mean-match", "1", "--class-mean-start", "-1"], "--class-mean-start=-1.0: expected kimg >= 0"),
        (["--class-mean-match", "1", "--cond", "0"], "--class-mean-match needs a conditional run"),
        (
            ["--class-mean-match", "1", "--dp", "1", "--batch", "4", "--dp-noise-multiplier", "1"],
            "--class-mean-match with --dp=1",
        ),
    ],
)
def test_bad_options_are_refused_before_training(tmp_path, captured, extra, message):
    data = write_dataset(str(tmp_path / "ds"))
    result = invoke(tmp_path, data, *extra)
    assert result.exit_code == 1 and message in result.output, result.output
    assert not captured

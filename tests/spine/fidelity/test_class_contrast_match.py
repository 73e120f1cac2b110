"""Class-contrast matching: value and gradient against a float64 brute force (scipy's blur as explicit matrices), the
tracked means against the exponentially weighted mean written out, the checkpoint round trip, and the
--class-contrast-match option through train.py."""

import os
import sys

import numpy as np
import pytest
import scipy.ndimage
import torch
from tolerances import rounding_tol
from torch import nn

import train
from spine.fidelity import contrast_options
from spine.fidelity.class_contrast_match import MIN_TRACKED, ClassContrastMatch
from spine.fidelity.class_mean_match import RealClassMeans

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "clinical"))
from test_clinical_training import invoke, write_dataset  # noqa: E402

SIGMA = 1.2


def _onehot(classes: list[int], num: int) -> torch.Tensor:
    return nn.functional.one_hot(torch.tensor(classes), num).float()


def _blur_operator(size: int) -> np.ndarray:
    """B with B @ x = scipy's 1-D Gaussian filter of x (edges repeated), built column by column from unit vectors."""
    return np.stack([scipy.ndimage.gaussian_filter1d(e, SIGMA, mode="nearest") for e in np.eye(size)], axis=1)


def _blur(images: np.ndarray) -> np.ndarray:
    rows, columns = _blur_operator(images.shape[-2]), _blur_operator(images.shape[-1])
    return rows @ images @ columns.T


def _real(num_classes: int = 3, size: int = 6, seed: int = 0) -> RealClassMeans:
    means = torch.rand(num_classes, 1, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return RealClassMeans(means, 0.5, SIGMA, (10,) * num_classes)


def _tracked_term(real: RealClassMeans, weight: float, tracked: torch.Tensor) -> ClassContrastMatch:
    """A term whose tracked blurred class means are `tracked` [C, 1, H, W] (state as after many images)."""
    term = ClassContrastMatch(real, weight)
    term.load_state_dict(dict(sums=tracked.double() * 500, counts=torch.full((len(tracked),), 500.0)))
    return term


def test_value_and_gradient_equal_a_float64_brute_force():
    """loss_i = weight * sum_c |e_c|^2 / Q for every image; d mean(loss) / d image_i = 2 weight B^T e_c / (n_c Q)."""
    real, weight = _real(), 2.5
    tracked = torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(1)) * 2 - 1
    term = _tracked_term(real, weight, tracked)
    classes = [0, 2, 0, 1, 0, 2, 2]
    img = (torch.rand(7, 1, 6, 6, generator=torch.Generator().manual_seed(2)) * 2 - 1).requires_grad_(True)
    loss = term(img, _onehot(classes, 3))
    loss.mean().backward()

    r, mu = real.means.double().numpy(), tracked.double().numpy()
    error = (mu - mu.mean(0)) - (r - r.mean(0))
    energy = float(((r - r.mean(0)) ** 2).sum())
    expected_value = weight * float((error**2).sum()) / energy
    scale = rounding_tol(torch.float32, 36 * 3, expected_value)
    torch.testing.assert_close(loss.double(), torch.full((7,), expected_value, dtype=torch.float64), rtol=0, atol=scale)
    rows = _blur_operator(6)
    counts = np.bincount(classes, minlength=3)
    expected_grad = np.stack([2 * weight * rows.T @ error[c, 0] @ rows / (counts[c] * energy) for c in classes])
    grad = img.grad[:, 0].double()
    torch.testing.assert_close(
        grad,
        torch.from_numpy(expected_grad),
        rtol=0,
        atol=rounding_tol(torch.float32, 36, float(np.abs(expected_grad).max())),
    )


def test_a_generator_with_the_real_contrasts_gets_no_loss_and_no_gradient():
    """G's tracked means = the real ones plus one shared image: the classes differ exactly as the real ones do."""
    real = _real()
    shared = torch.rand(1, 1, 6, 6, generator=torch.Generator().manual_seed(3))
    term = _tracked_term(real, 4.0, real.means + shared)
    img = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(4)).requires_grad_(True)
    loss = term(img, _onehot([0, 1, 2, 1], 3))
    loss.sum().backward()
    assert float(loss.detach().abs().max()) < rounding_tol(torch.float32, 100)
    assert float(img.grad.abs().max()) < rounding_tol(torch.float32, 100, 4.0 / float(term.energy))


def test_tracked_means_are_exponentially_weighted_and_the_term_waits_for_enough_images():
    """Two batches of N1 and N2 images: sums = decay^N2 * (blurred sum of batch 1) + blurred sum of batch 2, per
    class, counts alike; no loss until every class has MIN_TRACKED images' weight."""
    real, memory = _real(num_classes=2), 50.0
    term = ClassContrastMatch(real, 1.0, memory=memory)
    gen = torch.Generator().manual_seed(5)
    first, second = torch.rand(6, 1, 6, 6, generator=gen), torch.rand(4, 1, 6, 6, generator=gen)
    c_first, c_second = [0, 1, 1, 0, 1, 1], [1, 0, 0, 0]
    assert torch.equal(term(first, _onehot(c_first, 2)), torch.zeros(6))
    assert torch.equal(term(second, _onehot(c_second, 2)), torch.zeros(4))
    keep = np.exp(-len(c_second) / memory)
    for c in (0, 1):
        sum_first = _blur(first.double().numpy()[np.array(c_first) == c]).sum(0)
        sum_second = _blur(second.double().numpy()[np.array(c_second) == c]).sum(0)
        torch.testing.assert_close(
            term.sums[c],
            torch.from_numpy(keep * sum_first + sum_second),
            rtol=0,
            atol=rounding_tol(torch.float32, 40, 6),
        )
        expected_count = keep * c_first.count(c) + c_second.count(c)
        assert float(term.counts[c]) == pytest.approx(expected_count, rel=1e-12)
    term.counts += MIN_TRACKED
    assert float(term(second, _onehot(c_second, 2)).min()) > 0


def test_the_tracked_means_survive_a_checkpoint_and_a_transfer_starts_them_afresh():
    real = _real(num_classes=2)
    img, labels = torch.rand(8, 1, 6, 6, generator=torch.Generator().manual_seed(6)), _onehot([0, 1] * 4, 2)
    term = ClassContrastMatch(real, 1.0)
    for _ in range(30):
        term(img, labels)
    resumed = ClassContrastMatch(real, 1.0)
    resumed.load_state_dict(term.state_dict())
    assert torch.equal(resumed(img, labels), term(img, labels)) and float(term(img, labels).min()) > 0
    resumed.load_state_dict(None)
    assert float(resumed.counts.max()) == 0 and torch.equal(resumed(img, labels), torch.zeros(8))
    with pytest.raises(ValueError, match=r"tracked means of shape \(3, 1, 6, 6\)"):
        resumed.load_state_dict(ClassContrastMatch(_real(), 1.0).state_dict())


def test_refusals_of_the_term():
    real = _real(num_classes=2)
    with pytest.raises(ValueError, match="positive weight"):
        ClassContrastMatch(real, 0.0)
    with pytest.raises(ValueError, match="memory > 0 images"):
        ClassContrastMatch(real, 1.0, memory=0)
    with pytest.raises(ValueError, match="no class difference"):
        ClassContrastMatch(RealClassMeans(torch.ones(2, 1, 4, 4), 0.5, 1.0, (1, 1)), 1.0)
    with pytest.raises(ValueError, match=r"expected \[3, 2\] one-hot labels"):
        ClassContrastMatch(real, 1.0)(torch.zeros(3, 1, 6, 6), torch.zeros(3))
    with pytest.raises(ValueError, match=r"generated images of shape \(1, 8, 8\)"):
        ClassContrastMatch(real, 1.0)(torch.zeros(3, 1, 8, 8), _onehot([0, 1, 1], 2))


def test_the_option_reaches_the_run_and_builds_the_term_from_the_training_images(tmp_path, captured):
    assert "class_contrast_match" in {p.name for p in train.main.params} and contrast_options.PLUGIN in train.PLUGINS
    data = write_dataset(str(tmp_path / "ds"))
    result = invoke(tmp_path, data, "--class-contrast-match", "3", "--class-mean-match", "10")
    assert result.exit_code == 0, result.output
    args = captured[0]
    assert args.run_dir.endswith("-meanmatch10-contrast3")
    assert args.class_contrast_match == dict(weight=3.0, sigma=1.5, memory=2000.0)
    terms = train.build_plugins(args, "cpu").generator_terms
    (term,) = [t for t in terms if isinstance(t, ClassContrastMatch)]
    assert term.weight == 3.0 and term.real.counts == (4, 4) and len(terms) == 2
    expected = dict(weight=3.0, sigma=1.5, memory=2000.0, real_counts=[4, 4])
    assert term.snapshot_metadata()["class_contrast_match"] == expected
    result = invoke(tmp_path, data, "--class-contrast-match", "0.3", "--class-contrast-memory", "500")
    assert result.exit_code == 0 and captured[1].run_dir.endswith("-contrast0.3mem500"), result.output
    (term,) = train.build_plugins(captured[1], "cpu").generator_terms
    assert term.memory == 500.0 and term.decay == pytest.approx(np.exp(-1 / 500), rel=1e-15)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--class-contrast-match", "-1"], "--class-contrast-match=-1.0: expected a positive weight"),
        (["--class-contrast-match", "1", "--cond", "0"], "--class-contrast-match needs a conditional run"),
        (["--class-contrast-memory", "500"], "--class-contrast-memory needs --class-contrast-match"),
        (["--class-contrast-match", "1", "--class-contrast-memory", "0.5"], "--class-contrast-memory=0.5: expected"),
        (
            ["--class-contrast-match", "1", "--dp", "1", "--batch", "4", "--dp-noise-multiplier", "1"],
            "--class-contrast-match with --dp=1",
        ),
    ],
)
def test_bad_options_are_refused_before_training(tmp_path, captured, extra, message):
    data = write_dataset(str(tmp_path / "ds"))
    result = invoke(tmp_path, data, *extra)
    assert result.exit_code == 1 and message in result.output, result.output
    assert not captured

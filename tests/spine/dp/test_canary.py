"""The canary audit: Clopper-Pearson bounds and the epsilon bound against closed forms, a mechanism of known epsilon
never exceeded, canaries inserted into a dataset copy (labels kept or flipped), the audit of a trained DP run beside
its account, and of a classifier (a memorising oracle caught, a DP judge within its account)."""

import json
import math
import os

import numpy as np
import PIL.Image
import pytest
import scipy.stats
import torch
from click.testing import CliRunner
from tolerances import rounding_tol

from spine.dp import canary
from training.dataset import ImageFolderDataset


@pytest.mark.parametrize("k, n", [(0, 10), (3, 10), (10, 10), (17, 40)])
def test_clopper_pearson_matches_scipy_exact_interval(k, n):
    # A one-sided bound at alpha is one side of the two-sided exact interval at confidence 1 - 2 alpha.
    alpha = 0.025
    lower, upper = canary.clopper_pearson(k, n, alpha)
    reference = scipy.stats.binomtest(k, n).proportion_ci(confidence_level=1 - 2 * alpha, method="exact")
    assert lower == pytest.approx(reference.low, abs=1e-12) and upper == pytest.approx(reference.high, abs=1e-12)


def test_clopper_pearson_closed_forms_at_the_ends():
    # k = 0: upper = 1 - alpha^(1/n); k = n: lower = alpha^(1/n).
    assert canary.clopper_pearson(0, 12, 0.05)[1] == pytest.approx(1 - 0.05 ** (1 / 12), rel=1e-12)
    assert canary.clopper_pearson(12, 12, 0.05)[0] == pytest.approx(0.05 ** (1 / 12), rel=1e-12)
    with pytest.raises(ValueError, match="successes <= trials"):
        canary.clopper_pearson(5, 4, 0.05)


def test_epsilon_from_rates_closed_form():
    assert canary.epsilon_from_rates(0.5, 0.05, 0.0) == pytest.approx(math.log(10), rel=1e-12)
    # The TNR <= e^eps FNR + delta side binds: log(0.5 / 0.1) > log(0.9 / 0.5).
    assert canary.epsilon_from_rates(0.9, 0.5, 0.0) == pytest.approx(math.log(5), rel=1e-12)
    assert canary.epsilon_from_rates(0.5, 0.05, 0.01) == pytest.approx(math.log(0.49 / 0.05), rel=1e-12)
    assert canary.epsilon_from_rates(0.3, 0.3, 0.0) == 0.0  # chance constrains nothing
    assert canary.epsilon_from_rates(0.5, 0.0, 0.0) == math.inf


def test_perfect_separation_closed_form():
    # k members all above all k non-members: the best threshold has TP = k, FP = 0, so with the Bonferroni share
    # a = alpha / (2 m) over m = 2k thresholds, TPR_lower = a^(1/k), FPR_upper = 1 - a^(1/k).
    k, alpha, delta = 10, 0.05, 1e-5
    result = canary.empirical_epsilon(np.arange(k) + 100.0, np.arange(k), delta, alpha)
    a = alpha / (2 * 2 * k)
    expected = math.log((a ** (1 / k) - delta) / (1 - a ** (1 / k)))
    assert result.thresholds_tried == 2 * k and result.true_positives == k and result.false_positives == 0
    assert result.epsilon_lower_bound == pytest.approx(expected, rel=1e-12)
    assert result.epsilon_lower_bound < math.log(k)


def test_bound_never_exceeds_a_mechanism_of_known_epsilon():
    # Randomised response is exactly eps-DP: a member says 1 with probability e^eps / (1 + e^eps), a non-member with
    # 1 / (1 + e^eps). The bound from 20,000 draws each must stay below eps and come close to it.
    eps = 1.0
    rng = np.random.RandomState(0)
    p = math.exp(eps) / (1 + math.exp(eps))
    members, others = (rng.random_sample(20000) < p).astype(float), (rng.random_sample(20000) < 1 - p).astype(float)
    result = canary.empirical_epsilon(members, others, delta=0.0, alpha=0.05)
    assert 0.85 < result.epsilon_lower_bound <= eps


def test_stamp_marks_the_centre_only_and_differs_per_seed():
    image = np.full([1, 32, 32], 100, np.uint8)
    one, two = canary.stamp(image, 1), canary.stamp(image, 2)
    assert (one[:, :8] == 100).all() and (one[:, 24:] == 100).all() and (one[:, :, :8] == 100).all()
    assert set(np.unique(one[:, 8:24, 8:24])) <= {0, 255} and not np.array_equal(one, two)


def test_insert_writes_the_members_only(tmp_path, dp_dataset):
    dest, canaries_dir = str(tmp_path / "with"), str(tmp_path / "canaries")
    result = CliRunner().invoke(
        canary.cli, ["insert", "--data", dp_dataset, "--dest", dest, "--canaries", canaries_dir, "--count", "3"]
    )
    assert result.exit_code == 0, result.output
    record = json.load(open(os.path.join(canaries_dir, canary.CANARY_FILE)))
    members = [c for c in record["canaries"] if c["member"]]
    assert len(record["canaries"]) == 6 and len(members) == 3
    copy = ImageFolderDataset(dest, use_labels=True)
    assert len(copy) == 16 + 3
    infos = {copy.image_info(i)["file"]: (copy.image_info(i), copy.get_label(i)) for i in range(len(copy))}
    for c in members:
        info, label = infos[f"canary/{c['file']}"]
        assert info["study_id"] == c["file"] and int(np.argmax(label)) == c["label"]
    result = CliRunner().invoke(canary.cli, ["insert", "--data", dp_dataset, "--dest", dest, "--canaries", "x"])
    assert result.exit_code == 1 and "Error: --dest" in result.output


@pytest.mark.slow
def test_audit_of_a_dp_run_stays_within_its_account(tmp_path, dp_dataset):
    from test_training_dp import dp_args

    import train

    dest, canaries_dir = str(tmp_path / "with"), str(tmp_path / "canaries")
    canary.insert(dp_dataset, dest, canaries_dir, count=4, seed=0)
    run = str(tmp_path / "run")
    train.run_process(0, dp_args(dest, run, total_kimg=0.016))
    snapshot = sorted(f for f in os.listdir(run) if f.startswith("network-snapshot-"))[-1]
    out = str(tmp_path / "audit.json")
    args = ["audit", "--network", os.path.join(run, snapshot), "--canaries", canaries_dir, "--out", out]
    result = CliRunner().invoke(canary.cli, args)
    assert result.exit_code == 0, result.output
    report = json.load(open(out))
    assert report["empirical"]["num_members"] == report["empirical"]["num_nonmembers"] == 4
    assert report["accountant_epsilon"] > 0 and report["within_account"] is True
    assert f"accountant: {report['accountant_epsilon']:.4f}" in result.output


def test_flipped_canaries_carry_another_class_and_unlabelled_data_is_refused(tmp_path, dp_dataset):
    dest, canaries_dir = str(tmp_path / "with"), str(tmp_path / "canaries")
    args = ["insert", "--data", dp_dataset, "--dest", dest, "--canaries", canaries_dir, "--count", "4"]
    result = CliRunner().invoke(canary.cli, [*args, "--flip-labels", "1"])
    assert result.exit_code == 0 and "(labels flipped)" in result.output, result.output
    record = json.load(open(os.path.join(canaries_dir, canary.CANARY_FILE)))
    assert record["flip_labels"] is True
    base = ImageFolderDataset(dp_dataset, use_labels=True)
    base_label = {base.image_info(i)["file"]: int(np.argmax(base.get_label(i))) for i in range(len(base))}
    for c in record["canaries"]:  # two classes: the flipped label is the other one
        assert c["base_label"] == base_label[c["base_file"]] and c["label"] == 1 - c["base_label"]
    copy = ImageFolderDataset(dest, use_labels=True)
    labels = {copy.image_info(i)["file"]: int(np.argmax(copy.get_label(i))) for i in range(len(copy))}
    assert all(labels[f"canary/{c['file']}"] == c["label"] for c in record["canaries"] if c["member"])
    os.remove(os.path.join(dp_dataset, "dataset.json"))
    result = CliRunner().invoke(
        canary.cli,
        [
            "insert",
            "--data",
            dp_dataset,
            "--dest",
            str(tmp_path / "u"),
            "--canaries",
            str(tmp_path / "uc"),
            "--flip-labels",
            "1",
        ],
    )
    assert result.exit_code == 1 and "--flip-labels=1" in result.output and "no class labels" in result.output
    assert not os.path.exists(str(tmp_path / "u"))


class MeanPixelJudge(torch.nn.Module):
    """A classifier stand-in: one abnormal logit (or two class logits) from the image's mean pixel."""

    def __init__(self, outputs: int):
        super().__init__()
        self.outputs = outputs

    def preprocess_uint8(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.float32) / 255

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logit = 6 * x.mean((1, 2, 3)) - 3
        return logit[:, None] if self.outputs == 1 else torch.stack([-logit, logit], 1)


@pytest.mark.parametrize("outputs", [1, 2])
def test_classifier_scores_are_the_log_probability_of_each_label(outputs):
    images = np.stack([np.full([1, 4, 4], v, np.uint8) for v in (0, 60, 128, 255, 200)])
    labels = [0, 1, 1, 0, 1]
    scores = canary.classifier_scores(MeanPixelJudge(outputs), images, labels, batch=2)
    logit = 6 * images.reshape(5, -1).mean(1).astype(np.float64) / 255 - 3
    if outputs == 2:  # softmax over (-logit, logit) is a sigmoid of 2 logit
        logit = 2 * logit
    signed = np.where(np.array(labels) == 1, logit, -logit)
    # float32 log-softmax: an absolute error of a few roundings of the logits' size (up to 6)
    tol = rounding_tol(torch.float32, 16) * 6
    np.testing.assert_allclose(scores, -np.log1p(np.exp(-signed)), rtol=tol, atol=tol)


def test_a_classifier_that_memorised_its_members_is_caught_and_a_dp_judge_is_not(tmp_path, dp_dataset, monkeypatch):
    from spine.dp import judge

    dest, canaries_dir = str(tmp_path / "with"), str(tmp_path / "canaries")
    canary.insert(dp_dataset, dest, canaries_dir, count=8, seed=3, flip_labels=True)
    record = json.load(open(os.path.join(canaries_dir, canary.CANARY_FILE)))
    members = {c["file"] for c in record["canaries"] if c["member"]}
    pixels = {c["file"]: np.asarray(PIL.Image.open(os.path.join(canaries_dir, c["file"]))) for c in record["canaries"]}
    # An oracle that fits every member's (flipped) label and no non-member's: the bound is perfect separation's.
    memorised = canary.Target(
        "oracle",
        lambda images, labels: np.array(
            [float(any(np.array_equal(im[0], pixels[f]) for f in members)) for im in images]
        ),
        {},
    )
    report = canary.audit(memorised, canaries_dir, alpha=0.05)
    expected = canary.empirical_epsilon(np.ones(8), np.zeros(8), 1e-5, 0.05).epsilon_lower_bound
    assert report["flip_labels"] is True and report["accountant_epsilon"] is None
    assert report["empirical"]["epsilon_lower_bound"] == pytest.approx(expected, rel=1e-12) and expected > 0.3
    # A DP judge trained on the copy: the command's account, and a bound within it.
    judge_pkl, out = str(tmp_path / "judge.pkl"), str(tmp_path / "audit.json")
    args = ["--data", dest, "--out", judge_pkl, "--epsilon", "2", "--delta", "1e-3", "--epochs", "1", "--batch", "4"]
    assert CliRunner().invoke(judge.main, args).exit_code == 0
    result = CliRunner().invoke(
        canary.cli, ["audit", "--classifier", judge_pkl, "--canaries", canaries_dir, "--out", out]
    )
    assert result.exit_code == 0, result.output
    report = json.load(open(out))
    assert report["classifier"] == os.path.abspath(judge_pkl) and report["delta"] == 1e-3
    assert report["accountant_epsilon"] == pytest.approx(2, abs=0.1) and report["within_account"] is True
    both = ["audit", "--classifier", judge_pkl, "--network", judge_pkl, "--canaries", canaries_dir, "--out", out]
    result = CliRunner().invoke(canary.cli, both)
    assert result.exit_code == 1 and "give one target" in result.output

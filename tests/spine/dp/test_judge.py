"""The DP-SGD judge: its account (Opacus's, calibrated to the target), nothing chosen on the private images, the
account in classifier.pkl, and train.py composing it with D's into one epsilon (or naming the judge outside it)."""

import pytest
import torch
from click.testing import CliRunner

import train
from spine.classifier.artifact import load_classifier, save_classifier
from spine.classifier.data import LabelledImages, predict_probabilities
from spine.dp import accounting, judge, ledger
from spine.scoring import roc_auc


def separable_images(n: int = 40) -> LabelledImages:
    """Noise images; the abnormal half has a bright square, which a judge should learn to see."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 128, (n, 1, 16, 16), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % 2
    images[labels == 1, :, 4:12, 4:12] = 255
    return LabelledImages(images, labels, [None] * n, "abnormality", ["normal", "abnormal"], "memory", "sha")


def test_account_is_opacus_calibrated_and_nothing_is_chosen_on_the_data():
    data = separable_images()
    options = judge.PrivateJudgeOptions(epsilon=4.0, delta=1e-3, epochs=2, batch_size=8, resolution=16)
    result = judge.train_private_judge(data, options)
    privacy = result.provenance["privacy"]
    # ceil(40 / 8) = 5 Poisson draws per epoch at q = 1/5, two epochs: the history Opacus's accountant recorded.
    sigma = accounting.calibrate_noise_multiplier(4.0, 1e-3, 0.2, 10, "rdp")
    assert privacy["history"] == [[sigma, 0.2, 10]] and privacy["unit"] == "image"
    assert 4.0 - 0.01 <= privacy["epsilon"] <= 4.0
    spec = result.spec
    assert spec.arch_kwargs == dict(norm="group") and spec.input_norm == "image" and spec.thresholds == (0.5,)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in result.net.modules())


def test_learns_a_plain_difference_at_a_loose_budget():
    data = separable_images()
    options = judge.PrivateJudgeOptions(epsilon=1e4, delta=1e-3, epochs=10, batch_size=8, resolution=16, lr=3e-3)
    result = judge.train_private_judge(data, options)
    probs = predict_probabilities(result.net, result.spec, data.images).numpy()
    assert roc_auc(data.labels.numpy(), probs) > 0.9


def brightness_only_images(n: int = 40) -> LabelledImages:
    """Pairs of identical noise images, the abnormal one of each pair 64 grey levels brighter: nothing but absolute
    intensity tells the classes apart."""
    g = torch.Generator().manual_seed(1)
    normal = torch.randint(0, 128, (n // 2, 1, 16, 16), generator=g, dtype=torch.uint8)
    images = torch.cat([normal, normal + 64])
    labels = torch.cat([torch.zeros(n // 2, dtype=torch.long), torch.ones(n // 2, dtype=torch.long)])
    return LabelledImages(images, labels, [None] * n, "abnormality", ["normal", "abnormal"], "memory", "sha")


def test_a_dataset_normalised_judge_sees_intensity_that_a_per_image_one_cannot():
    data = brightness_only_images()
    aucs = {}
    for norm in judge.JUDGE_INPUT_NORMS:
        options = judge.PrivateJudgeOptions(
            epsilon=1e4, delta=1e-3, epochs=10, batch_size=8, resolution=16, lr=3e-3, input_norm=norm
        )
        result = judge.train_private_judge(data, options)
        aucs[norm] = roc_auc(data.labels.numpy(), predict_probabilities(result.net, result.spec, data.images).numpy())
    # Per-image standardisation maps each pair to one input up to float32 rounding (about 1e-7 of the score), so the
    # classes' scores are one distribution and the AUC is 0.5 but for near-tied pairs that rounding flips (0.02: 8 of
    # the 400 pairs).
    assert aucs["image"] == pytest.approx(0.5, abs=0.02) and aucs["dataset"] > 0.9
    spec = judge.judge_spec(data, judge.PrivateJudgeOptions(epsilon=1, delta=1e-5, input_norm="dataset"))
    assert spec.input_norm == "dataset"
    fixed = dict(mean=[judge.FIXED_INTENSITY_MEAN], std=[judge.FIXED_INTENSITY_STD])
    assert {k: spec.intensity[k] for k in fixed} == fixed


def test_refusals_name_the_option():
    with pytest.raises(ValueError, match="--arch=resnet18"):
        judge.PrivateJudgeOptions(epsilon=1, delta=1e-5, arch="resnet18")
    with pytest.raises(ValueError, match="--delta"):
        judge.PrivateJudgeOptions(epsilon=1, delta=0)
    with pytest.raises(ValueError, match="--input-norm=blurred_image"):
        judge.PrivateJudgeOptions(epsilon=1, delta=1e-5, input_norm="blurred_image")


@pytest.fixture
def dp_judge(tmp_path, dp_dataset) -> str:
    """A DP judge of the DP tests' dataset, written by the command."""
    out = str(tmp_path / "judge.pkl")
    args = ["--data", dp_dataset, "--out", out, "--epsilon", "2", "--delta", "1e-3", "--epochs", "1", "--batch", "4"]
    result = CliRunner().invoke(judge.main, args)
    assert result.exit_code == 0, result.output
    assert "DP judge: epsilon 1.9" in result.output
    return out


def test_command_refuses_delta_above_one_over_n(tmp_path, dp_dataset):
    out = tmp_path / "judge.pkl"
    result = CliRunner().invoke(
        judge.main, ["--data", dp_dataset, "--out", str(out), "--epsilon", "2", "--delta", "0.1"]
    )
    assert result.exit_code == 1 and "Error: --delta=0.1: expected delta < 1/N = 0.0625" in result.output
    assert not out.exists()


def invoke_train(tmp_path, monkeypatch, data, *extra):
    calls = []
    monkeypatch.setattr(train, "launch", lambda args: calls.append(args))
    base = ["--outdir", str(tmp_path / "runs"), "--data", data, "--cfg", "demo", "--cond", "1", "--batch", "4"]
    result = CliRunner().invoke(train.main, [*base, "--kimg", "1", "--dp", "1", "--dp-delta", "1e-3", *extra])
    return result, (calls[-1] if calls else None)


def test_train_composes_the_dp_judge_into_one_epsilon(tmp_path, monkeypatch, dp_dataset, dp_judge):
    result, args = invoke_train(tmp_path, monkeypatch, dp_dataset, "--dp-epsilon", "8", "--clinical-loss", dp_judge)
    assert result.exit_code == 0, result.output
    history = load_classifier(dp_judge).provenance["privacy"]["history"]
    assert args.dp["composed_with"] == [["judge", *history[0]]]
    assert ledger.JUDGE_OUTSIDE_ACCOUNT not in args.dp["outside_account"]
    # D's noise is calibrated for the rest of the budget: the planned 250 steps composed with the judge end at 8.
    total = accounting.composed_epsilon(((args.dp["noise_multiplier"], 0.25, 250), tuple(history[0])), 1e-3, "rdp")
    assert 8 - 0.01 <= total <= 8
    result, _ = invoke_train(
        tmp_path, monkeypatch, dp_dataset, "--dp-epsilon", "8", "--clinical-loss", dp_judge, "--dp-unit", "study"
    )
    assert result.exit_code != 0 and "the two accounts compose only for the same privacy unit" in result.output
    result, _ = invoke_train(tmp_path, monkeypatch, dp_dataset, "--dp-epsilon", "1", "--clinical-loss", dp_judge)
    assert result.exit_code != 0 and "already spent epsilon 1.9" in result.output


def test_a_judge_without_dp_is_named_outside_or_declared_public(tmp_path, monkeypatch, dp_dataset, dp_judge):
    plain = str(tmp_path / "plain.pkl")
    classifier = load_classifier(dp_judge)
    save_classifier(plain, classifier.net, classifier.spec, dict(note="trained without DP"))
    result, args = invoke_train(tmp_path, monkeypatch, dp_dataset, "--dp-epsilon", "8", "--clinical-loss", plain)
    assert result.exit_code == 0, result.output
    assert args.dp["composed_with"] == [] and args.dp["outside_account"][0] == ledger.JUDGE_OUTSIDE_ACCOUNT
    result, args = invoke_train(
        tmp_path, monkeypatch, dp_dataset, "--dp-epsilon", "8", "--clinical-loss", plain, "--dp-judge-public", "1"
    )
    assert result.exit_code == 0, result.output
    assert args.dp["outside_account"] == list(ledger.OUTSIDE_ACCOUNT)
    assert args.dp["declared_public"] == [f"the clinical loss's judge {plain} (--dp-judge-public=1)"]
    result, _ = invoke_train(
        tmp_path, monkeypatch, dp_dataset, "--dp-epsilon", "8", "--clinical-loss", dp_judge, "--dp-judge-public", "1"
    )
    assert result.exit_code != 0 and "was trained with DP-SGD on private images" in result.output


def test_on_public_data_the_judge_is_the_whole_account(tmp_path, monkeypatch, dp_dataset, dp_judge):
    """--dp-data-public=1: D trains as without DP (minibatch-std, R1, ADA allowed), fake labels from the public prior,
    and the account is the DP judge's alone, the training images declared public."""
    public = ("--dp-data-public", "1", "--clinical-loss", dp_judge)
    result, args = invoke_train(tmp_path, monkeypatch, dp_dataset, *public, "--dp-epsilon", "2", "--aug", "ada")
    assert result.exit_code == 0, result.output
    dp = args.dp
    history = load_classifier(dp_judge).provenance["privacy"]["history"]
    assert dp["mode"] == "public-data" and dp["composed_with"] == [["judge", *history[0]]]
    assert dp["declared_public"] == [f"the training images {dp_dataset} (--dp-data-public=1)"]
    assert args.D_kwargs.epilogue_kwargs.get("mbstd_num_channels", 1) != 0 and "D_reg_interval" not in args
    assert args.ada_target is not None and "dp-publicdata" in args.run_dir
    account = accounting.PrivacyAccount(
        dp["noise_multiplier"], dp["sample_rate"], dp["delta"], dp["accountant"], composed_with=dp["composed_with"]
    )
    assert account.epsilon() == pytest.approx(accounting.composed_epsilon((tuple(history[0]),), 1e-3, "rdp"))
    assert account.epsilon_parts()["discriminator"] == 0
    for extra, message in [
        (("--dp-epsilon", "1"), "--dp-epsilon=1: the judge --clinical-loss="),
        (("--dp-d-steps", "4"), "--dp-data-public=1: --dp-d-steps belongs to DP-SGD on private --data"),
    ]:
        result, _ = invoke_train(tmp_path, monkeypatch, dp_dataset, *public, *extra)
        assert result.exit_code != 0 and message in result.output
    result, _ = invoke_train(tmp_path, monkeypatch, dp_dataset, "--dp-data-public", "1")
    assert result.exit_code != 0 and "--dp-data-public=1 needs --clinical-loss=<judge.pkl>" in result.output


@pytest.mark.slow
def test_a_public_data_run_records_the_judges_epsilon_in_its_snapshot(tmp_path, monkeypatch, dp_dataset, dp_judge):
    import glob
    import os

    from training.serialization import load_network_pkl

    result, args = invoke_train(
        tmp_path, monkeypatch, dp_dataset, "--dp-data-public", "1", "--clinical-loss", dp_judge, "--metrics", "none"
    )
    assert result.exit_code == 0, result.output
    args.total_kimg, args.kimg_per_tick, args.network_snapshot_ticks = 0.016, 0.008, 1  # 4 iterations
    args.run_dir = str(tmp_path / "run")
    os.makedirs(args.run_dir)
    train.run_process(0, args)
    snapshot = load_network_pkl(sorted(glob.glob(os.path.join(args.run_dir, "network-snapshot-*.pkl")))[-1])
    privacy = snapshot["metadata"]["privacy"]
    history = load_classifier(dp_judge).provenance["privacy"]["history"]
    assert privacy["steps"] == 0 and privacy["epsilon"] == pytest.approx(
        accounting.composed_epsilon((tuple(history[0]),), 1e-3, "rdp"), rel=1e-9
    )
    assert privacy["declared_public"][0].startswith("the training images ")

"""DP options through train.py: refusals with the option named, safe defaults, sigma calibration, paper mode."""

import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import train
from spine.dp import accounting, guards
from spine.dp import options as dp_options


@pytest.fixture
def run(tmp_path, monkeypatch, dp_dataset):
    calls = []
    monkeypatch.setattr(train, "launch", lambda args: calls.append(args))
    data = dp_dataset

    def invoke(*extra):
        result = CliRunner().invoke(
            train.main,
            [
                "--outdir",
                str(tmp_path / "runs"),
                "--data",
                data,
                "--cfg",
                "demo",
                "--cond",
                "1",
                "--batch",
                "4",
                "--kimg",
                "1",
                *extra,
            ],
        )
        return result, (calls[-1] if calls else None)

    return invoke


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--mirror", "1"], "refuses --mirror"),
        (["--aug", "ada"], "refuses --aug=ada"),
        (["--gpus", "2"], "--gpus=1 only"),
        ([], "needs --dp-noise-multiplier or --dp-epsilon"),
        (["--dp-epsilon", "5", "--dp-delta", "0.5"], "--dp-delta=0.5"),
        (["--dp-epsilon", "5", "--dp-pretrain-public", "1"], "--dp-pretrain-public=1 needs --resume=<snapshot.pkl>"),
    ],
)
def test_refusals_name_the_option(run, extra, message):
    result, _ = run("--dp", "1", *extra)
    assert result.exit_code != 0
    assert message in result.output


def test_the_noise_ablation_needs_no_sigma(run):
    result, args = run("--dp", "1", "--dp-noise", "0", "--dp-clip", "0")
    assert result.exit_code == 0, result.output
    assert args.dp["noise"] is False and args.dp["noise_multiplier"] == 0.0 and args.dp["epsilon_budget"] is None
    result, _ = run("--dp", "1", "--dp-clip", "0")  # noise on: its sigma is still required
    assert result.exit_code != 0 and "needs --dp-noise-multiplier or --dp-epsilon" in result.output


@pytest.mark.parametrize(
    "flag, value", [("--dp-epsilon", "3"), ("--dp-secure-rng", "1"), ("--dp-clip", "0"), ("--dp-d-steps", "4")]
)
def test_dp_option_without_dp_is_refused(run, flag, value):
    result, _ = run(flag, value)
    assert result.exit_code != 0 and f"{flag} needs --dp=1" in result.output


def test_every_declared_option_reaches_the_command():
    command = {param.name for param in train.main.params}
    assert set(dp_options.OPTIONS.names) <= command
    assert dp_options.OPTIONS.names[0] == "dp" and "dp_secure_rng" in dp_options.OPTIONS.names


def test_explicit_minibatch_std_is_refused_and_default_removed():
    with pytest.raises(guards.DPConfigError, match="minibatch-std"):
        guards.private_discriminator_kwargs(dict(epilogue_kwargs=dict(mbstd_num_channels=1)))
    kwargs = guards.private_discriminator_kwargs(dict(epilogue_kwargs=dict(mbstd_group_size=4)))
    assert kwargs["epilogue_kwargs"] == dict(mbstd_group_size=4, mbstd_num_channels=0)


def test_dpsgd_settings(run):
    result, args = run("--dp", "1", "--dp-epsilon", "8", "--dp-delta", "1e-3", "--dp-unit", "study")
    assert result.exit_code == 0, result.output
    assert args.D_kwargs.epilogue_kwargs["mbstd_num_channels"] == 0
    assert args.D_reg_interval is None and args.ada_target is None and args.augment_kwargs is None
    dp = args.dp
    assert dp["sample_rate"] == 4 / 16 and dp["unit"] == "study" and dp["epsilon_budget"] == 8
    # Calibrated for the planned 1 kimg = 250 steps: epsilon there is within the target.
    assert accounting.epsilon_after(250, dp["noise_multiplier"], 0.25, 1e-3, "rdp") <= 8
    assert "dp-eps8" in os.path.basename(args.run_dir)
    assert "dp" not in train.loop_kwargs(args) and "dp" in train.run_options(args)


def test_fixed_augmentation_allowed(run):
    result, args = run("--dp", "1", "--dp-noise-multiplier", "1", "--aug", "fixed", "--p", "0.2")
    assert result.exit_code == 0, result.output
    assert args.augment_p == 0.2 and args.ada_target is None


def test_ablation_is_labelled_not_dp(run):
    result, args = run("--dp", "1", "--dp-noise-multiplier", "1", "--dp-noise", "0")
    assert result.exit_code == 0, result.output
    assert "notdp" in os.path.basename(args.run_dir) and args.dp["epsilon_budget"] is None


def test_paper_mode_defaults(run):
    result, args = run("--dp", "1", "--dp-mode", "paper")
    assert result.exit_code == 0, result.output
    assert args.batch_gpu == 1 and args.dp["mode"] == "paper"
    assert args.dp["noise_multiplier"] * args.dp["max_grad_norm"] == pytest.approx(0.02)
    assert args.dp["max_grad_norm"] == 1.5 and "notdp" in os.path.basename(args.run_dir)


def test_label_prior_is_public():
    prior = guards.PublicLabelPrior(3, onehot=True, probs=[0.2, 0.0, 0.8])
    np.random.seed(0)
    labels = prior(20000)
    assert labels.shape == (20000, 3) and (labels.sum(1) == 1).all()
    assert labels[:, 1].sum() == 0 and abs(labels[:, 0].mean() - 0.2) < 0.01
    with pytest.raises(guards.DPConfigError, match="sum to 1"):
        guards.PublicLabelPrior(2, onehot=True, probs=[0.5, 0.6])


def test_d_steps_and_physical_batch_reach_the_settings(run):
    result, args = run(
        "--dp", "1", "--dp-epsilon", "8", "--dp-delta", "1e-3", "--dp-d-steps", "4", "--dp-physical-batch", "2"
    )
    assert result.exit_code == 0, result.output
    assert args.dp["d_steps"] == 4 and args.dp["physical_batch"] == 2
    assert "dp-eps8-dsteps4" in os.path.basename(args.run_dir)
    # Every iteration is one private D step, so the calibration plans kimg * 1000 / batch = 250 steps as before.
    assert accounting.epsilon_after(250, args.dp["noise_multiplier"], 0.25, 1e-3, "rdp") <= 8
    result, _ = run("--dp", "1", "--dp-epsilon", "8", "--dp-delta", "1e-3", "--dp-d-steps", "0")
    assert result.exit_code == 2 and "--dp-d-steps" in result.output


def test_public_reals_reach_the_settings_and_the_account(run, image_folder):
    public = image_folder("public", n=6, labels=[0] * 6)
    result, args = run("--dp", "1", "--dp-epsilon", "8", "--dp-delta", "1e-3", "--dp-public-reals", public)
    assert result.exit_code == 0, result.output
    assert args.dp["public_reals"] == public and args.dp["public_weight"] == 1.0
    assert any(public in entry and "(6)" in entry for entry in args.dp["declared_public"])
    # normal studies only (integer label 0): one-hot widened to the training data's two classes
    assert dp_options._public_reals(args, args.dp).labels.tolist() == [[1.0, 0.0]] * 6
    assert "publicreals" in os.path.basename(args.run_dir)
    unlabelled = image_folder("unlabelled", n=6)
    result, args = run(
        "--dp",
        "1",
        "--dp-epsilon",
        "8",
        "--dp-delta",
        "1e-3",
        "--cond",
        "0",
        "--dp-public-reals",
        unlabelled,
        "--dp-public-weight",
        "0.5",
    )  # an unconditional run reads no label
    assert result.exit_code == 0, result.output
    assert args.dp["public_weight"] == 0.5 and args.dp["private_params"] == "all"
    result, args = run("--dp", "1", "--dp-epsilon", "8", "--dp-public-reals", public, "--dp-private-params", "head")
    assert result.exit_code == 0, result.output
    assert args.dp["private_params"] == "head" and "publicreals-privatehead" in os.path.basename(args.run_dir)
    assert args.dp["private_weight"] == 1.0
    result, args = run("--dp", "1", "--dp-epsilon", "8", "--dp-public-reals", public, "--dp-private-weight", "0.05")
    assert result.exit_code == 0, result.output
    assert args.dp["private_weight"] == 0.05 and "publicreals-privateweight0.05" in os.path.basename(args.run_dir)
    assert dp_options.build(args, torch.device("cpu")).discriminator_update.private_weight == 0.05
    critic = ("--dp-public-reals", unlabelled, "--d-cond", "0", "--dp-private-critic", "4,8", "--dp-critic-weight", "2")
    result, args = run("--dp", "1", "--dp-epsilon", "8", *critic)  # no judge: the critic teaches G the classes
    assert result.exit_code == 0, result.output
    assert args.dp["private_critic"] == "4,8" and args.dp["critic_weight"] == 2.0
    assert "publicreals-critic4-8-cweight2" in os.path.basename(args.run_dir)
    assert args.loss_kwargs.adversarial_class == 0
    plugins = dp_options.build(args, torch.device("cpu"))
    (term,) = plugins.generator_terms
    assert plugins.discriminator_update.critic is term and term.weight == 2.0
    assert [conv.out_channels for conv in term.critic.convs] == [4, 8]
    again = dp_options.build(args, torch.device("cpu")).generator_terms[0]  # the run's seed sets the weights
    assert all(torch.equal(a, b) for a, b in zip(term.critic.parameters(), again.critic.parameters()))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--dp-epsilon", "8", "--dp-public-weight", "0.5"], "--dp-public-weight needs --dp-public-reals"),
        (["--dp-epsilon", "8", "--dp-private-params", "head"], "--dp-private-params needs --dp-public-reals"),
        (["--dp-epsilon", "8", "--dp-private-weight", "0.1"], "--dp-private-weight needs --dp-public-reals"),
        (["--dp-data-public", "1", "--dp-private-weight", "0.1"], "--dp-private-weight"),
        (["--dp-epsilon", "8", "--dp-public-reals", "SMALL"], "--dp-public-reals=SMALL: 16x16 images"),
        (["--dp-epsilon", "8", "--dp-public-reals", "UNLABELLED"], "an unlabelled dataset"),
        (["--dp-mode", "paper", "--dp-public-reals", "SMALL"], "--dp-public-reals belongs to --dp-mode=dpsgd"),
        (["--dp-data-public", "1", "--dp-public-reals", "SMALL"], "--dp-public-reals belongs to DP-SGD on private"),
        (["--dp-epsilon", "8", "--dp-private-critic", "4,8"], "--dp-private-critic needs --dp-public-reals"),
        (["--dp-epsilon", "8", "--dp-critic-weight", "2"], "--dp-critic-weight needs --dp-private-critic"),
        (["--dp-epsilon", "8", "--dp-public-reals", "PUBLIC", "--dp-private-critic", "4,x"], "comma-separated"),
        (
            [
                "--dp-epsilon",
                "8",
                "--dp-public-reals",
                "PUBLIC",
                "--dp-private-critic",
                "4",
                "--dp-private-params",
                "head",
            ],
            "--dp-private-params and --dp-private-critic both say what the private images train",
        ),
        (["--dp-data-public", "1", "--dp-private-critic", "4,8"], "--dp-private-critic"),
    ],
)
def test_public_reals_refusals_name_the_flag(run, image_folder, extra, message):
    paths = dict(
        SMALL=image_folder("small", n=4, res=16, labels=[0] * 4),
        UNLABELLED=image_folder("unlabelled", n=4),
        PUBLIC=image_folder("public", n=4, labels=[0] * 4),
    )
    result, _ = run("--dp", "1", *[paths.get(arg, arg) for arg in extra])
    assert result.exit_code != 0
    assert message.replace("SMALL", paths["SMALL"]) in result.output
    assert "Traceback" not in result.output


def test_private_batch_sets_the_sample_rate_not_the_steps(run):
    base = ("--dp", "1", "--dp-epsilon", "8", "--dp-delta", "1e-3")
    result, args = run(*base, "--dp-private-batch", "12")
    assert result.exit_code == 0, result.output
    dp = args.dp
    assert dp["sample_rate"] == 12 / 16 and args.batch_size == 4
    assert "dp-eps8-pbatch12" in os.path.basename(args.run_dir)
    # The planned steps still follow G's batch (1 kimg / 4 = 250): calibrated within the target at q = 0.75 ...
    assert accounting.epsilon_after(250, dp["noise_multiplier"], 0.75, 1e-3, "rdp") <= 8
    # ... and a larger q needs more noise than --batch's q = 0.25 for the same epsilon.
    _, plain = run(*base)
    assert dp["noise_multiplier"] > plain.dp["noise_multiplier"]
    # The Poisson sampler and the DP update's normaliser both expect 12 images per draw.
    plugins = dp_options.build(args, torch.device("cpu"))
    assert plugins.real_sampling.expected_batch_size == pytest.approx(12)
    assert plugins.discriminator_update.expected_batch_size == pytest.approx(12)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--dp-private-batch", "17"], "--dp-private-batch=17: expected at most the number of images (16)"),
        (["--dp-private-batch", "0"], "--dp-private-batch"),
    ],
)
def test_private_batch_refusals(run, extra, message):
    result, _ = run("--dp", "1", "--dp-epsilon", "8", "--dp-delta", "1e-3", *extra)
    assert result.exit_code != 0 and message in result.output

"""End to end on the CPU: a tiny DP run prints and records its epsilon; a resumed run matches an uninterrupted one."""

import glob
import json
import os

import pytest
import torch

import train
from spine.dp import accounting
from training import checkpoint as ckpt
from training.serialization import load_network_pkl

pytestmark = pytest.mark.slow


def dp_args(data: str, outdir: str, total_kimg: float, resume: str | None = None, **dp_opts):
    opts = dict(
        outdir=outdir,
        gpus=1,
        snap=1,
        metrics="none",
        seed=0,
        kimg_per_tick=0.008,
        data=data,
        cond=True,
        d_cond=True,
        subset=None,
        mirror=False,
        cfg="demo",
        gamma=None,
        kimg=1,
        batch=4,
        batch_gpu=None,
        aug=None,
        p=None,
        target=None,
        augpipe=None,
        resume=resume,
        freezed=None,
        fp32=False,
        nhwc=False,
        nobench=False,
        allow_tf32=False,
        cuda_graphs=False,
        workers=0,
        dp=True,
        dp_mode=None,
        dp_noise_multiplier=1.2,
        dp_epsilon=None,
        dp_delta=1e-3,
        dp_max_grad_norm=None,
        dp_accountant="rdp",
        dp_unit=None,
        dp_clip=None,
        dp_noise=None,
        dp_label_prior=None,
        clinical_loss=None,
        clinical_weight=None,
        clinical_augment=None,
        clinical_match=None,
        class_locality=None,
        class_locality_power=None,
        mode_seeking=None,
        class_mean_match=None,
        class_mean_start=None,
        class_mean_blur=None,
        class_contrast_match=None,
        class_contrast_memory=None,
        metrics_classifier=None,
        dp_secure_rng=None,
        dp_d_steps=None,
        dp_judge_public=None,
        dp_pretrain_public=None,
        dp_data_public=None,
        dp_private_batch=None,
        dp_physical_batch=None,
        dp_public_reals=None,
        dp_public_weight=None,
        dp_private_params=None,
        dp_private_weight=None,
        dp_private_critic=None,
        dp_critic_weight=None,
    )
    opts.update(dp_opts)
    _, args = train.setup_training_loop_kwargs(train.dnnlib.EasyDict(opts))
    args.total_kimg = total_kimg
    args.run_dir = outdir
    os.makedirs(outdir, exist_ok=True)
    return args


def last_stats(run_dir: str) -> dict:
    with open(os.path.join(run_dir, "stats.jsonl")) as f:
        return json.loads(f.read().splitlines()[-1])


def interrupted_and_resumed(tmp_path, data: str, **dp_opts) -> dict:
    """The checkpoint of a 0.016-kimg run stopped at 0.008 kimg and resumed from its checkpoint."""
    first, second = str(tmp_path / "first"), str(tmp_path / "second")
    train.run_process(0, dp_args(data, first, total_kimg=0.008, **dp_opts))
    train.run_process(0, dp_args(data, second, total_kimg=0.016, resume=os.path.join(first, ckpt.FILE_NAME), **dp_opts))
    return ckpt.load_checkpoint(os.path.join(second, ckpt.FILE_NAME))


def assert_same_networks(resumed: dict, reference: dict) -> None:
    for net in ("G", "D", "G_ema"):
        for key, value in reference["nets"][net]["state_dict"].items():
            assert torch.equal(resumed["nets"][net]["state_dict"][key], value), (net, key)


def test_tiny_dp_run_and_exact_resume(tmp_path, capsys, dp_dataset):
    data = dp_dataset
    whole = str(tmp_path / "whole")
    train.run_process(0, dp_args(data, whole, total_kimg=0.016))  # 4 iterations, ticks of 2
    assert "epsilon " in capsys.readouterr().out
    stats = last_stats(whole)
    assert stats["Privacy/steps"]["mean"] == 4
    snapshot = load_network_pkl(sorted(glob.glob(os.path.join(whole, "network-snapshot-*.pkl")))[-1])
    privacy = snapshot["metadata"]["privacy"]
    assert privacy["steps"] == 4 and privacy["epsilon"] == pytest.approx(stats["Privacy/epsilon"]["mean"], rel=1e-6)
    assert privacy["noise_multiplier"] == 1.2 and privacy["sample_rate"] == 0.25 and privacy["delta"] == 1e-3

    resumed = interrupted_and_resumed(tmp_path, data)
    reference = ckpt.load_checkpoint(os.path.join(whole, ckpt.FILE_NAME))
    assert resumed["plugins"]["privacy_account"] == reference["plugins"]["privacy_account"]
    for key, value in reference["nets"]["D"]["state_dict"].items():
        assert torch.equal(resumed["nets"]["D"]["state_dict"][key], value), key


def test_budget_stop_says_why_and_ends_with_a_final_snapshot(tmp_path, capsys, dp_dataset):
    """A run that meets its epsilon budget stops cleanly: the reason, exit without error, a last snapshot."""
    run = str(tmp_path / "run")
    args = dp_args(dp_dataset, run, total_kimg=1)
    budget = accounting.epsilon_after(2, 1.2, 0.25, 1e-3, "rdp") + 1e-9  # two D steps fit, a third would not
    args.dp["epsilon_budget"] = budget
    train.run_process(0, args)  # returns normally: the CLI exits 0
    out = capsys.readouterr().out
    assert f"privacy budget epsilon={budget:g} reached after 2 steps" in out and "Aborting" not in out
    snapshot = load_network_pkl(sorted(glob.glob(os.path.join(run, "network-snapshot-*.pkl")))[-1])
    assert snapshot["metadata"]["privacy"]["steps"] == 2 and snapshot["metadata"]["cur_nimg"] == 12
    assert ckpt.load_checkpoint(os.path.join(run, ckpt.FILE_NAME))["progress"]["cur_nimg"] == 12


def test_default_augmentation_off_is_said(tmp_path, dp_dataset):
    args = dp_args(dp_dataset, str(tmp_path / "run"), total_kimg=1)
    assert args.augment_kwargs is None and args.ada_target is None
    assert any(note.startswith("--dp=1: augmentation is off (ADA, the default --aug") for note in args.notes)


def test_several_d_steps_per_g_step_are_each_accounted_and_resume_exactly(tmp_path, dp_dataset):
    """--dp-d-steps=2 with micro-batches of one image: 4 iterations are 4 private D steps (Opacus's RDP epsilon of 4
    steps) and 2 G steps; a run interrupted after 2 iterations and resumed ends identical."""
    from opacus.accountants import RDPAccountant

    recipe = dict(dp_d_steps=2, dp_physical_batch=1)
    whole = str(tmp_path / "whole")
    train.run_process(0, dp_args(dp_dataset, whole, total_kimg=0.016, **recipe))
    reference = ckpt.load_checkpoint(os.path.join(whole, ckpt.FILE_NAME))
    account = reference["plugins"]["privacy_account"]
    opacus = RDPAccountant()
    for _ in range(4):
        opacus.step(noise_multiplier=1.2, sample_rate=0.25)
    assert account["steps"] == 4 and account["epsilon"] == pytest.approx(opacus.get_epsilon(delta=1e-3), rel=1e-6)
    calls = reference["plugins"]["generator_update"]["calls"]
    assert calls["Gmain"] == 4  # G stepped on calls 0 and 2

    resumed = interrupted_and_resumed(tmp_path, dp_dataset, **recipe)
    assert resumed["plugins"] == reference["plugins"]
    assert_same_networks(resumed, reference)


def test_a_public_pretrained_start_is_declared_and_kept_when_continued(tmp_path, dp_dataset):
    """DP fine-tuning from a snapshot: declared public with --dp-pretrain-public=1 (in the snapshot's account), else
    named outside the account; a continued fine-tuning run states the same start."""
    pretrain = str(tmp_path / "pretrain")
    train.run_process(0, dp_args(dp_dataset, pretrain, total_kimg=0.008, dp_clip=False, dp_noise=False))
    start = sorted(glob.glob(os.path.join(pretrain, "network-snapshot-*.pkl")))[-1]

    undeclared = dp_args(dp_dataset, str(tmp_path / "undeclared"), total_kimg=0.008, resume=start)
    assert undeclared.dp["declared_public"] == [] and undeclared.dp["outside_account"][0].startswith(
        f"the pretrained start {start}: what it learned"
    )
    first = str(tmp_path / "first")
    train.run_process(0, dp_args(dp_dataset, first, total_kimg=0.008, resume=start, dp_pretrain_public=True))
    declared = [f"the pretrained start {start} (--dp-pretrain-public=1)"]
    snapshot = load_network_pkl(sorted(glob.glob(os.path.join(first, "network-snapshot-*.pkl")))[-1])
    assert snapshot["metadata"]["privacy"]["declared_public"] == declared
    assert not any(start in line for line in snapshot["metadata"]["privacy"]["outside_account"])

    second = str(tmp_path / "second")
    continued = dp_args(dp_dataset, second, total_kimg=0.016, resume=os.path.join(first, ckpt.FILE_NAME))
    assert continued.resume_pkl is None and continued.dp["declared_public"] == declared
    assert (continued.ada_kimg, continued.ema_rampup) == (100, None)  # the transfer-learning run's own settings
    train.run_process(0, continued)
    assert ckpt.load_checkpoint(os.path.join(second, ckpt.FILE_NAME))["plugins"]["privacy_account"]["steps"] == 4


def test_public_reals_change_d_and_resume_exactly(tmp_path, dp_dataset, image_folder):
    """--dp-public-reals: D's steps read the public images (D differs from the run without them, the account's
    steps and epsilon do not; the images are declared public), and a run interrupted after 2 iterations and resumed
    ends identical (the draws come from the checkpointed RNG)."""
    recipe = dict(dp_public_reals=image_folder("public", n=6, labels=[0] * 6), dp_public_weight=0.5)
    without = str(tmp_path / "without")
    train.run_process(0, dp_args(dp_dataset, without, total_kimg=0.016))
    whole = str(tmp_path / "whole")
    train.run_process(0, dp_args(dp_dataset, whole, total_kimg=0.016, **recipe))
    reference = ckpt.load_checkpoint(os.path.join(whole, ckpt.FILE_NAME))
    plain = ckpt.load_checkpoint(os.path.join(without, ckpt.FILE_NAME))
    account, plain_account = reference["plugins"]["privacy_account"], plain["plugins"]["privacy_account"]
    assert (account["steps"], account["epsilon"]) == (plain_account["steps"], plain_account["epsilon"])
    assert "--dp-public-reals" in account["declared_public"][0] and plain_account["declared_public"] == []
    d_with, d_without = reference["nets"]["D"]["state_dict"], plain["nets"]["D"]["state_dict"]
    assert any(not torch.equal(d_with[key], d_without[key]) for key in d_with)

    resumed = interrupted_and_resumed(tmp_path, dp_dataset, **recipe)
    assert_same_networks(resumed, reference)


def test_a_private_critic_is_checkpointed_and_resumes_exactly(tmp_path, dp_dataset, image_folder):
    """--dp-private-critic: the critic (which reads the private images) is trained and checkpointed with its
    optimiser, so a run interrupted after 2 iterations and resumed ends identical, critic included; the account
    counts one step per D step as without it, at the rate of --dp-private-batch (12 of 16 images, G's batch 4)."""
    public = image_folder("public", n=6, labels=[0] * 6)
    recipe = dict(
        dp_public_reals=public, dp_private_critic="2,4", dp_critic_weight=0.5, d_cond=False, dp_private_batch=12
    )
    whole = str(tmp_path / "whole")
    train.run_process(0, dp_args(dp_dataset, whole, total_kimg=0.016, **recipe))
    reference = ckpt.load_checkpoint(os.path.join(whole, ckpt.FILE_NAME))
    state = reference["plugins"]["generator_term/private_critic"]
    assert state["optimizer"]["state"]  # Adam has taken steps
    account = reference["plugins"]["privacy_account"]
    assert account["steps"] == 4 and account["sample_rate"] == 12 / 16

    resumed = interrupted_and_resumed(tmp_path, dp_dataset, **recipe)
    assert_same_networks(resumed, reference)
    for key, value in state["critic"].items():
        assert torch.equal(resumed["plugins"]["generator_term/private_critic"]["critic"][key], value), key

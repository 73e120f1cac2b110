"""End-to-end CPU runs of the training loop: outputs, and exact continuation from a checkpoint."""

import copy
import json
import os
import re

import numpy as np
import PIL.Image
import pytest
import torch
from tolerances import rounding_tol

from torch_utils import training_stats
from training import checkpoint as ckpt
from training.dataset import construct_dataset
from training.fake_labels import DatasetLabels, fake_label_sampler
from training.loop_plugins import LoopPlugins
from training.loss import StyleGAN2Loss
from training.phase_timer import PhaseTimer
from training.phase_update import GradientStep
from training.plugins import Plugin
from training.serialization import load_network_pkl
from training.training_loop import (
    Progress,
    build_networks,
    build_phases,
    fetch_rounds,
    kimg_tag,
    load_training_data,
    make_adam,
    needs_fine_names,
    run_iteration,
    time_left,
    training_loop,
    update_ema,
)


def write_dataset(path: str, n: int = 16, res: int = 16, labels: bool = True) -> str:
    """n grayscale res x res PNGs (bright disc on dark, radius by class) plus dataset.json."""
    os.makedirs(path)
    rng = np.random.RandomState(0)
    yy, xx = np.mgrid[:res, :res]
    entries = []
    for i in range(n):
        cls = i % 2
        radius = res * (0.2 + 0.15 * cls)
        img = ((xx - res / 2) ** 2 + (yy - res / 2) ** 2 < radius**2) * 200 + rng.randint(0, 40, [res, res])
        name = f"img{i:03d}.png"
        PIL.Image.fromarray(img.astype(np.uint8), "L").save(os.path.join(path, name))
        entries.append([name, cls])
    with open(os.path.join(path, "dataset.json"), "w") as f:
        json.dump({"labels": entries if labels else None}, f)
    return path


def loop_kwargs(data: str, run_dir: str, **overrides) -> dict:
    kwargs = dict(
        run_dir=run_dir,
        training_set_kwargs=dict(
            class_name="training.dataset.ImageFolderDataset",
            path=data,
            use_labels=True,
            max_size=16,
            xflip=False,
            resolution=16,
            random_seed=0,
        ),
        data_loader_kwargs=dict(num_workers=0),
        G_kwargs=dict(
            z_dim=16,
            w_dim=16,
            mapping_kwargs=dict(num_layers=1),
            synthesis_kwargs=dict(channel_base=128, channel_max=16, num_fp16_res=0, conv_clamp=256),
        ),
        D_kwargs=dict(
            architecture="resnet",
            channel_base=128,
            channel_max=16,
            block_kwargs={},
            mapping_kwargs={},
            epilogue_kwargs=dict(mbstd_group_size=2),
        ),
        G_opt_kwargs=dict(lr=0.0025, betas=[0, 0.99], eps=1e-8),
        D_opt_kwargs=dict(lr=0.0025, betas=[0, 0.99], eps=1e-8),
        augment_kwargs=dict(
            xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1, contrast=1, lumaflip=1
        ),
        loss_kwargs=dict(r1_gamma=1.0),
        random_seed=3,
        batch_size=4,
        batch_gpu=2,
        ema_kimg=0.01,
        ema_rampup=0.05,
        G_reg_interval=2,
        D_reg_interval=2,
        augment_p=0.2,
        ada_target=0.6,
        ada_interval=1,
        ada_kimg=0.1,
        total_kimg=0.024,
        kimg_per_tick=0.004,
        image_snapshot_ticks=2,
        network_snapshot_ticks=2,
        image_grid_size=(4, 2),
        cudnn_benchmark=False,
    )
    kwargs.update(overrides)
    os.makedirs(run_dir, exist_ok=True)
    return kwargs


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> str:
    return write_dataset(str(tmp_path_factory.mktemp("data") / "ds"))


def test_tiny_run_writes_every_output(dataset, tmp_path, capsys):
    run = str(tmp_path / "run")
    training_loop(
        **loop_kwargs(
            dataset,
            run,
            total_kimg=0.012,  # 3 iterations, ticks 0..2
            metric_kwargs=dict(classifier="/models/classifier.pkl"),
        )
    )
    ticks = [line for line in capsys.readouterr().out.splitlines() if line.startswith("tick")]
    assert len(ticks) == 3 and "left -" in ticks[0] and ticks[-1].split("left ")[1].startswith("0s")
    assert all(re.search(r" time \d+s +sec/tick", tick) for tick in ticks)  # the official duration format
    files = set(os.listdir(run))
    # Snapshots at 4 and 12 images (ticks 0 and 2, then done) are named to the image: whole kimg would collide.
    assert {
        "reals.png",
        "fakes_init.png",
        "fakes000000.004.png",
        "fakes000000.012.png",
        "stats.jsonl",
        "checkpoint.pt",
        "network-snapshot-000000.004.pkl",
        "network-snapshot-000000.012.pkl",
    } <= files
    assert any(name.startswith("events.out.tfevents.") for name in files)  # TensorBoard, as the official loop
    reals = PIL.Image.open(os.path.join(run, "reals.png"))
    # 16-pixel tiles enlarged 4x to 64 pixels, a margin naming each row's class ('class 0', 'class 1') on the left
    assert reals.mode == "L" and reals.size[1] == 2 * 64 and 0 < reals.size[0] - 4 * 64 < 100
    lines = [json.loads(line) for line in open(os.path.join(run, "stats.jsonl"))]
    assert [line["Progress/tick"]["mean"] for line in lines] == [0, 1, 2]
    assert lines[-1]["Progress/kimg"]["mean"] == pytest.approx(0.012)
    for name in (
        "Loss/G/loss",
        "Loss/D/loss",
        "Loss/scores/real",
        "Loss/signs/fake",
        "Timing/Gmain",
        "Timing/Dmain",
        "Resources/cpu_mem_gb",
        "Progress/augment",
    ):
        assert name in lines[-1], name
    snap = load_network_pkl(os.path.join(run, "network-snapshot-000000.012.pkl"))
    assert snap["G_ema"].img_channels == 1 and snap["G_ema"].c_dim == 2
    assert snap["metadata"]["metrics_classifier"] == "/models/classifier.pkl"  # calc_metrics.py's default
    state = ckpt.load_checkpoint(os.path.join(run, "checkpoint.pt"))
    assert state["progress"] == dict(cur_nimg=12, cur_tick=3, batch_idx=3, tick_start_nimg=12)
    # ADA moved p away from 0.2 by whole steps of batch * interval / (ada_kimg * 1000) = 0.04.
    p = float(state["nets"]["augment_pipe"]["state_dict"]["p"])
    # p is a float32 buffer moved by a few float32 additions of 0.04: rounding_tol(float32, 8) on |p| <= 1,
    # divided by the step.
    step_tol = rounding_tol(torch.float32, 8) / 0.04
    assert p != pytest.approx(0.2) and ((p - 0.2) / 0.04) == pytest.approx(round((p - 0.2) / 0.04), abs=step_tol)


def test_snapshot_names_are_whole_kimg_unless_snapshots_can_collide():
    assert not needs_fine_names(total_kimg=30, kimg_per_tick=1, snapshot_ticks=[50, 50])
    assert not needs_fine_names(total_kimg=30, kimg_per_tick=0.25, snapshot_ticks=[4, None])
    assert needs_fine_names(total_kimg=30, kimg_per_tick=0.25, snapshot_ticks=[3, 4])  # 0.75 kimg apart
    assert needs_fine_names(total_kimg=2.5, kimg_per_tick=1, snapshot_ticks=[1, 1])  # 2.016 and 2.5 kimg: '000002'
    assert [kimg_tag(n, False) for n in (16, 40_000)] == ["000000", "000040"]
    assert [kimg_tag(n, True) for n in (16, 1008, 40_000)] == ["000000.016", "000001.008", "000040.000"]
    fine = [f"network-snapshot-{kimg_tag(n, True)}.pkl" for n in (16, 1008, 2016, 2500)]
    assert sorted(fine) == fine  # listed in training order


def test_time_left_formats_the_remaining_kimg_at_the_last_speed():
    assert time_left(Progress(cur_nimg=20_000, cur_tick=3), total_kimg=30, sec_per_kimg=20) == "3m 20s"
    assert time_left(Progress(cur_nimg=0, cur_tick=0), total_kimg=30, sec_per_kimg=500) == "-"  # start-up tick
    assert time_left(Progress(cur_nimg=31_000, cur_tick=9), total_kimg=30, sec_per_kimg=20) == "0s"


def final_state(run: str) -> dict:
    return ckpt.load_checkpoint(os.path.join(run, "checkpoint.pt"))


class Killed(Exception):
    pass


def bf16_kwargs(dataset: str, run_dir: str, **overrides) -> dict:
    """loop_kwargs with the 8x8 and 16x16 blocks of G and D marked for reduced precision (bf16 with `cpu_bf16`)."""
    kwargs = loop_kwargs(dataset, run_dir, **overrides)
    kwargs["G_kwargs"]["synthesis_kwargs"].update(num_fp16_res=2)
    kwargs["D_kwargs"].update(num_fp16_res=2, conv_clamp=256)
    return kwargs


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_kill_and_resume_is_bit_identical(dataset, tmp_path, precision, request):
    if precision == "bf16":
        request.getfixturevalue("cpu_bf16")
    run_kwargs = bf16_kwargs if precision == "bf16" else loop_kwargs
    # Uninterrupted: 6 iterations, a tick each, checkpoints after ticks 0, 2, 4 and the end.
    full = str(tmp_path / "full")
    training_loop(**run_kwargs(dataset, full))

    # Killed during the tick after the checkpoint at tick 2 (one iteration past it is lost).
    def kill(kimg, total, calls=[]):
        calls.append(kimg)
        if len(calls) == 5:  # the call at start, then ticks 0, 1, 2, 3
            raise Killed()

    part = str(tmp_path / "part")
    with pytest.raises(Killed):
        training_loop(**run_kwargs(dataset, part, progress_fn=kill))
    assert final_state(part)["progress"]["batch_idx"] == 3

    resumed = str(tmp_path / "resumed")
    training_loop(**run_kwargs(dataset, resumed, resume_checkpoint=os.path.join(part, "checkpoint.pt")))
    a, b = final_state(full), final_state(resumed)
    assert a["progress"] == b["progress"]
    for net in ("G", "D", "G_ema", "augment_pipe"):
        for key, value in a["nets"][net]["state_dict"].items():
            assert torch.equal(value, b["nets"][net]["state_dict"][key]), f"{net}.{key}"
    for name in ("G", "D"):
        for idx, s in a["optimizers"][name]["state"].items():
            for k, v in s.items():
                assert torch.equal(v, b["optimizers"][name]["state"][idx][k]), f"optimizer {name} {idx} {k}"
    assert a["pl_mean"] == b["pl_mean"]
    assert a["processes"][0]["ada"] == b["processes"][0]["ada"]


def test_bf16_training_stays_finite_and_says_so(dataset, tmp_path, cpu_bf16, capsys):
    # 12 iterations with R1 every 2nd one, all through the bf16 blocks of G and D.
    run = str(tmp_path / "run")
    training_loop(
        **bf16_kwargs(
            dataset, run, total_kimg=0.048, kimg_per_tick=0.016, image_snapshot_ticks=None, network_snapshot_ticks=3
        )
    )
    assert "bf16 blocks: G 8, 16; D 16, 8 (SPINEGAN_CPU_BF16=on)" in capsys.readouterr().out
    state = final_state(run)
    for net in ("G", "D", "G_ema"):
        for key, value in state["nets"][net]["state_dict"].items():
            assert torch.isfinite(value).all(), f"{net}.{key}"
    with open(os.path.join(run, "stats.jsonl")) as f:
        stats = [json.loads(line) for line in f]
    for name in ("Loss/G/loss", "Loss/D/loss", "Loss/r1_penalty"):
        assert all(np.isfinite(line[name]["mean"]) for line in stats), name


def test_resume_refuses_other_network_options(dataset, tmp_path):
    run = str(tmp_path / "a")
    training_loop(**loop_kwargs(dataset, run, total_kimg=0.004))
    other = loop_kwargs(dataset, str(tmp_path / "b"), resume_checkpoint=os.path.join(run, "checkpoint.pt"))
    other["G_kwargs"] = dict(other["G_kwargs"], mapping_kwargs=dict(num_layers=2))
    with pytest.raises(ValueError, match="G was built with"):
        training_loop(**other)


def test_ema_beta_follows_half_life_and_rampup():
    G = torch.nn.Linear(1, 1, bias=False)
    G_ema = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        G.weight.fill_(1.0)
        G_ema.weight.fill_(0.0)
    # ema_nimg = min(10_000, 4_000 * 0.5) = 2000 -> beta = 0.5 ** (1000 / 2000).
    update_ema(G, G_ema, cur_nimg=4000, batch_size=1000, ema_kimg=10, ema_rampup=0.5)
    # One float32 lerp (3 roundings) of values <= 1.
    assert float(G_ema.weight.detach()) == pytest.approx(1 - 0.5**0.5, abs=rounding_tol(torch.float32, 3))


def test_ema_matches_the_per_tensor_lerp_exactly():
    torch.manual_seed(0)
    G = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    G_ema = copy.deepcopy(G)
    with torch.no_grad():
        for p in G.parameters():
            p.add_(torch.randn_like(p))
        G[1].running_mean.normal_()
        G[1].num_batches_tracked.fill_(7)
    beta = 0.5 ** (16 / 2000)
    expected = [p.lerp(p_ema, beta) for p, p_ema in zip(G.parameters(), G_ema.parameters())]  # the official form
    update_ema(G, G_ema, cur_nimg=100_000, batch_size=16, ema_kimg=2, ema_rampup=None)
    assert all(torch.equal(p_ema, e) for p_ema, e in zip(G_ema.parameters(), expected))
    assert all(torch.equal(b_ema, b) for b_ema, b in zip(G_ema.buffers(), G.buffers()))


def test_adam_on_a_cpu_is_the_fused_step_with_the_plain_steps_values():
    # The fused kernel (one per step) against torch's per-tensor loop in float64: the same update, summed in
    # another order (a few ops per element, values of order 1 after 5 steps of lr 0.1).
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Linear(4, 3)).double()
    plain_net = copy.deepcopy(net)
    kwargs = dict(lr=0.1, betas=(0.0, 0.99), eps=1e-8)
    fused, plain = make_adam(net, kwargs), torch.optim.Adam(plain_net.parameters(), foreach=False, **kwargs)
    assert fused.defaults["fused"] and not plain.defaults["fused"]
    for _ in range(5):
        grads = [torch.randn_like(p) for p in net.parameters()]
        for params in (net.parameters(), plain_net.parameters()):
            for p, g in zip(params, grads):
                p.grad = g.clone()
        fused.step()
        plain.step()
    for p, q in zip(net.parameters(), plain_net.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=rounding_tol(torch.float64, 5 * 10, magnitude=2.0))


class CountingTerm(Plugin):
    """A stateful generator term: counts the images it judged (zero loss); its count is its checkpointed state."""

    name = "counter"

    def __init__(self):
        self.images_seen = 0

    def __call__(self, gen_img, gen_c):
        self.images_seen += gen_img.shape[0]
        return gen_img.mean(dim=[1, 2, 3]) * 0

    def state_dict(self):
        return dict(images_seen=self.images_seen)

    def load_state_dict(self, state):
        self.images_seen = state["images_seen"]


def test_generator_term_state_survives_checkpoint_and_resume(dataset, tmp_path):
    # 3 iterations of batch 4 -> Gmain judges 12 images; split as 2 iterations, then resumed for the third.
    whole = CountingTerm()
    training_loop(
        **loop_kwargs(dataset, str(tmp_path / "whole"), total_kimg=0.012, plugins=LoopPlugins(generator_terms=(whole,)))
    )
    assert whole.images_seen == 12
    part = str(tmp_path / "part")
    training_loop(
        **loop_kwargs(dataset, part, total_kimg=0.008, plugins=LoopPlugins(generator_terms=(CountingTerm(),)))
    )
    assert final_state(part)["plugins"] == {"generator_term/counter": dict(images_seen=8)}
    resumed = CountingTerm()
    training_loop(
        **loop_kwargs(
            dataset,
            str(tmp_path / "resumed"),
            total_kimg=0.012,
            plugins=LoopPlugins(generator_terms=(resumed,)),
            resume_checkpoint=os.path.join(part, "checkpoint.pt"),
        )
    )
    assert resumed.images_seen == 12
    # A resume that would drop the term's state is refused, naming the plug-in.
    with pytest.raises(ValueError, match="'generator_term/counter', which this run lacks"):
        training_loop(
            **loop_kwargs(
                dataset,
                str(tmp_path / "dropped"),
                total_kimg=0.012,
                resume_checkpoint=os.path.join(part, "checkpoint.pt"),
            )
        )


def run_bare_iterations(data: str, run_dir: str, device: torch.device, iterations: int, warmup: int = 0) -> None:
    """The loop's per-iteration steps on `device` (no ticks), without augmentation: fetch_rounds, run_iteration
    (all four phases, lazy regularisation due at even iterations), update_ema. Every host read of a device value
    happens in the `warmup` iterations or fails the caller's guard."""
    kw = loop_kwargs(data, run_dir)
    training_set, reals = load_training_data(
        kw["training_set_kwargs"], kw["data_loader_kwargs"], 0, 1, 0, 4, 0, device, None
    )
    nets = build_networks(training_set, kw["G_kwargs"], kw["D_kwargs"], None, 0, None, {}, 4, device)
    loss = StyleGAN2Loss(device=device, G=nets.G, D=nets.D, **kw["loss_kwargs"])
    phases = build_phases(nets, loss, kw["G_opt_kwargs"], kw["D_opt_kwargs"], 2, 2, GradientStep())
    assert [phase.name for phase in phases] == ["Gmain", "Greg", "Dmain", "Dreg"]
    labels = fake_label_sampler(training_set, device, None)
    timer = PhaseTimer(device)
    try:
        for it in range(warmup + iterations):
            rounds = fetch_rounds(reals, labels, nets.G.z_dim, len(phases), 4, 2, device)
            run_iteration(phases, loss, rounds, it, timer)
            update_ema(nets.G, nets.G_ema, 4 * it, 4, 0.01, 0.05)
            if it + 1 == warmup and device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.set_sync_debug_mode("error")
    finally:
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode("default")


def test_an_iteration_never_reads_the_device(dataset, tmp_path):
    # On the meta device tensors have shapes but no values: any .item(), float(), boolean index, nonzero or copy
    # to the host of a device tensor raises, so completing two iterations (every phase, the lazy-regularisation
    # ones included) shows that the loop's steady state never waits for the device. Host-side decisions that
    # stay on host tensors (style mixing's draws, Adam's step counter) are allowed, as they are on a GPU.
    labels = DatasetLabels(
        construct_dataset(loop_kwargs(dataset, str(tmp_path))["training_set_kwargs"]),
        torch.device("meta"),
        on_device=True,
    )
    assert labels(3).device.type == "meta"
    try:
        run_bare_iterations(dataset, str(tmp_path / "run"), torch.device("meta"), iterations=3)
    finally:  # statistics reported on the meta device have no values: leave none for later runs in this process
        for per_device in training_stats._pending.values():
            per_device.pop(torch.device("meta"), None)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_an_iteration_never_synchronises_on_a_gpu(dataset, tmp_path):
    # torch's sync debug mode raises on every synchronising call (item, blocking copies, nonzero, ...); the first
    # iterations may synchronise (cuDNN autotuning, lazy allocations).
    run_bare_iterations(dataset, str(tmp_path / "run"), torch.device("cuda"), iterations=4, warmup=2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_run_with_cuda_graphs_captures_every_phase(dataset, tmp_path, capsys):
    # 12 iterations: every phase (the lazy ones every 2nd) gets its warm-up calls and is captured, then replayed.
    run = str(tmp_path / "run")
    training_loop(**loop_kwargs(dataset, run, total_kimg=0.048, cuda_graphs=True))
    out = capsys.readouterr().out
    assert "Phases: CUDA graphs" in out and "capture failed" not in out
    lines = [json.loads(line) for line in open(os.path.join(run, "stats.jsonl"))]
    for name in ("Loss/G/loss", "Loss/D/loss", "Loss/G/reg", "Loss/D/reg"):
        assert np.isfinite(lines[-1][name]["mean"]) and lines[-1][name]["num"] > 0, name
    assert "network-snapshot-000000.048.pkl" in os.listdir(run)

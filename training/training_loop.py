"""The StyleGAN2-ADA training loop, as named steps.

    setup_runtime -> load_training_data -> build_networks -> (transfer init | checkpoint resume) -> build_phases
    -> loop { fetch_rounds -> run_iteration -> update_ema -> update_ada
              -> on a tick: report_progress, run_tick_outputs (grids, snapshot, metrics), stats, write_checkpoint }

Options and output files follow the official StyleGAN2-ADA loop. Differences, on purpose:
  * Resume from a checkpoint (`resume_checkpoint`) continues the run exactly: weights, optimisers, augment p, ADA
    state, pl_mean, counters and RNG states. A network pickle (`resume_pkl`) only initialises weights.
  * Gradients are the mean over the whole batch whatever the split into processes and accumulation rounds
    (the official loop sums the rounds); multi-process sync all-reduces one flattened gradient per phase.
  * Grids and metrics run with the RNG state preserved, so they never change the training's random streams.
  * An iteration never waits for the GPU (phase times from CUDA events read at the tick, labels drawn on the device,
    ADA's p adjusted there), except where the augment pipe reads values back (docs/PERFORMANCE.md, "GPU").
  * `cuda_graphs` captures each phase as a CUDA graph at fixed shapes and replays it (training.graph_capture).

Plug-ins enter as one value, `plugins` (a `training.loop_plugins.LoopPlugins`): the update rules of the D / G
phases (DP-SGD, the authors' noise-and-clip scheme), generator terms (the clinical loss), the fake-image labels, the
sampling of the real batches, and plug-ins with hooks only. Every plug-in is a `training.plugins.Plugin`: it may
keep checkpointed state, add snapshot metadata, report per tick and stop the run (DP: the privacy budget).
`abort_fn()`, asked at every tick, stops the run cleanly (final snapshot and checkpoint) when it returns True or a
non-empty reason, which is printed. `metric_fn` computes the metrics at snapshots (train.py passes
`metrics.metric_main.calc_metric`), so the loop does not depend on the metrics package.
A signal caught by `training.interrupt.stop_on_signals` stops it after the iteration with a checkpoint only.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import random
import resource
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import psutil
import torch

import dnnlib
from torch_utils import misc, training_stats
from training import checkpoint as ckpt
from training import distributed as dist_utils
from training import graph_capture, interrupt
from training.data_path import DrawnBatches, RealBatch, ShuffledBatches
from training.dataset import construct_dataset
from training.fake_labels import fake_label_sampler
from training.image_grid import LEGIBLE_TILE, choose_grid_indices, grid_shape, row_names, save_image_grid
from training.loop_plugins import (
    LoopPlugins,
    RealSampling,
    plugin_metadata,
    plugin_states,
    plugin_stop_reason,
    plugin_tick_report,
    restore_plugin_states,
)
from training.loss import StyleGAN2Loss
from training.networks import precision_summary
from training.phase_timer import PhaseTimer
from training.phase_update import GradientStep, Phase, PhaseRound, PhaseUpdate
from training.plugins import Plugin

# ---------------------------------------------------------------------------------------------------------------
# State shared by the steps.


@dataclasses.dataclass
class Progress:
    """Counters that define where a run is; all of them are checkpointed."""

    cur_nimg: int = 0
    cur_tick: int = 0
    batch_idx: int = 0
    tick_start_nimg: int = 0


@dataclasses.dataclass
class Nets:
    G: torch.nn.Module
    D: torch.nn.Module
    G_ema: torch.nn.Module
    augment_pipe: torch.nn.Module | None
    ada: Any | None  # training.augment.AdaController when ADA is on


# ---------------------------------------------------------------------------------------------------------------
# Setup.


def pick_device(rank: int) -> torch.device:
    """cuda:<local rank> when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count()
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def setup_runtime(
    random_seed: int, rank: int, world: int, device: torch.device, cudnn_benchmark: bool, allow_tf32: bool
) -> None:
    """Seed every global RNG with seed * world + rank and set the backend flags."""
    seed = random_seed * world + rank
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = cudnn_benchmark
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    torch.backends.cudnn.allow_tf32 = allow_tf32
    training_stats.init_multiprocessing(rank=rank, sync_device=device if world > 1 else None)


def load_training_data(
    training_set_kwargs: dict,
    data_loader_kwargs: dict,
    rank: int,
    world: int,
    seed: int,
    batch_per_rank: int,
    start_index: int,
    device: torch.device,
    real_sampling: RealSampling | None,
) -> tuple[Any, ShuffledBatches | DrawnBatches]:
    """The dataset and this process's endless stream of real batches: drawn by a plug-in's sampler if one asks
    for it (DP-SGD's Poisson sampling), else the shuffled stream from `start_index` on."""
    training_set = construct_dataset(training_set_kwargs)
    if real_sampling is not None:
        return training_set, DrawnBatches(training_set, real_sampling(training_set), device)
    return training_set, ShuffledBatches(
        training_set, data_loader_kwargs, rank, world, seed, batch_per_rank, start_index, device
    )


def build_networks(
    training_set: Any,
    G_kwargs: dict,
    D_kwargs: dict,
    augment_kwargs: dict | None,
    augment_p: float,
    ada_target: float | None,
    ada_kwargs: dict,
    batch_size: int,
    device: torch.device,
) -> Nets:
    """G, D and G_ema (a copy of G) for the dataset's shape; the augment pipe and ADA controller if asked for."""
    from training.networks import Discriminator, Generator

    common = dict(
        c_dim=training_set.label_dim, img_resolution=training_set.resolution, img_channels=training_set.num_channels
    )
    G = Generator(**G_kwargs, **common).train().requires_grad_(False).to(device)
    # D_kwargs may drop the label (c_dim=0: train.py --d-cond=0)
    D = Discriminator(**{**common, **D_kwargs}).train().requires_grad_(False).to(device)
    G_ema = copy.deepcopy(G).eval()
    augment_pipe, ada = None, None
    if augment_kwargs is not None and (augment_p > 0 or ada_target is not None):
        from training.augment import AdaController, AugmentPipe

        augment_pipe = AugmentPipe(**augment_kwargs).train().requires_grad_(False).to(device)
        augment_pipe.p.copy_(torch.as_tensor(augment_p))
        if ada_target is not None:
            ada = AdaController(target=ada_target, batch_size=batch_size, **ada_kwargs)
    return Nets(G=G, D=D, G_ema=G_ema, augment_pipe=augment_pipe, ada=ada)


def init_from_snapshot(resume_pkl: str, nets: Nets) -> None:
    """Transfer learning: copy G, D and G_ema weights by name from a network pickle (ours or official)."""
    from training.serialization import load_network_pkl

    print(f'Initialising networks from "{resume_pkl}" (transfer learning: counters, optimisers and p start anew)')
    with dnnlib.open_url(resume_pkl) as f:
        data = load_network_pkl(f)
    for name in ("G", "D", "G_ema"):
        if data.get(name) is not None:
            misc.copy_params_and_buffers(data[name], getattr(nets, name), require_all=False)


def make_adam(module: torch.nn.Module, kwargs: dict) -> torch.optim.Adam:
    """Adam over `module`'s parameters; on a CPU its fused form: one kernel per step instead of about ten small ops
    per parameter tensor (58 in G at the demo preset: 2.4 -> 1.0 ms per step there, docs/PERFORMANCE.md). Other
    devices keep torch's default (on a GPU the foreach form, which CUDA graph capture makes capturable)."""
    on_cpu = all(p.device.type == "cpu" for p in module.parameters())
    return torch.optim.Adam(module.parameters(), **kwargs, **(dict(fused=True) if on_cpu else {}))


def build_phases(
    nets: Nets,
    loss: StyleGAN2Loss,
    G_opt_kwargs: dict,
    D_opt_kwargs: dict,
    G_reg_interval: int | None,
    D_reg_interval: int | None,
    discriminator_update: PhaseUpdate,
    generator_update: PhaseUpdate | None = None,
) -> list[Phase]:
    """Gmain/Greg/Dmain/Dreg (lazy regularisation) or Gboth/Dboth; reg phases with zero weight are left out.

    With lazy regularisation Adam's lr and betas are adjusted by r/(r+1) as in the StyleGAN2 paper.
    """
    phases = []
    generator_update = generator_update or GradientStep()
    for prefix, module, opt_kwargs, interval, update, reg_on in [
        ("G", nets.G, G_opt_kwargs, G_reg_interval, generator_update, loss.pl_weight != 0),
        ("D", nets.D, D_opt_kwargs, D_reg_interval, discriminator_update, loss.r1_gamma != 0),
    ]:
        kwargs = dict(opt_kwargs)
        kwargs["betas"] = tuple(float(beta) for beta in kwargs.get("betas", (0.9, 0.999)))  # torch wants floats
        if interval is None:
            opt = make_adam(module, kwargs)
            phases.append(Phase(prefix + "both", module, opt, 1, update))
            continue
        ratio = interval / (interval + 1)
        kwargs["lr"] = kwargs["lr"] * ratio
        kwargs["betas"] = tuple(beta**ratio for beta in kwargs["betas"])
        opt = make_adam(module, kwargs)
        phases.append(Phase(prefix + "main", module, opt, 1, update))
        if reg_on:
            phases.append(Phase(prefix + "reg", module, opt, interval, update))
    return phases


def resume_from_checkpoint(
    data: dict, path: str, nets: Nets, loss: StyleGAN2Loss, phases: Sequence[Phase], rank: int, world: int
) -> tuple[Progress, dict | None]:
    """Restore everything but the RNG states (restored last, see `training_loop`); returns (progress, rng state)."""
    for name in ("G", "D", "G_ema", "augment_pipe"):
        module, entry = getattr(nets, name), data["nets"].get(name)
        if (module is None) != (entry is None):
            raise ValueError(f"{path}: the checkpoint {'has' if entry else 'lacks'} {name}, this run does not match")
        if module is not None:
            ckpt.load_net_state(module, entry, name, path)
    optimizers = optimizers_by_name(phases)
    for name, opt in optimizers.items():
        opt.load_state_dict(data["optimizers"][name])
    loss.pl_mean.fill_(data["pl_mean"])
    progress = Progress(**{k: data["progress"][k] for k in dataclasses.asdict(Progress())})
    processes = data["processes"]
    if len(processes) != world:
        print(
            f"Warning: {path} was written by {len(processes)} processes, this run has {world}; "
            f"random streams restart from the seed, so the continuation is not bit-exact"
        )
    mine = processes[rank] if len(processes) == world else dict(processes[0], rng=None)
    if (nets.ada is None) != (mine["ada"] is None):
        raise ValueError(
            f"{path}: ADA is {'on' if mine['ada'] is not None else 'off'} in the checkpoint; "
            f"resume with the same --aug options"
        )
    if nets.ada is not None:
        nets.ada.load_state_dict(mine["ada"])
    rng = mine["rng"]
    print(f'Resumed from checkpoint "{path}" at {progress.cur_nimg / 1000:.3f} kimg, tick {progress.cur_tick}')
    return progress, rng


def optimizers_by_name(phases: Sequence[Phase]) -> dict[str, torch.optim.Optimizer]:
    return {phase.name[0]: phase.opt for phase in phases}


# ---------------------------------------------------------------------------------------------------------------
# One iteration.


def fetch_rounds(
    real_batches: Iterator[RealBatch],
    fake_labels: Callable[[int], torch.Tensor],
    z_dim: int,
    num_phases: int,
    batch_per_rank: int,
    batch_gpu: int,
    device: torch.device,
) -> list[list[PhaseRound]]:
    """This process's reals (shared by all phases) and fresh latents/labels per phase, split into rounds."""
    reals = next(real_batches).split(batch_per_rank // batch_gpu)
    per_phase = []
    for _ in range(num_phases):
        gen_z = torch.randn([batch_per_rank, z_dim], device=device).split(batch_gpu)
        gen_c = fake_labels(batch_per_rank).split(batch_gpu)
        per_phase.append([PhaseRound(real.img, real.c, z, c, real.units) for real, z, c in zip(reals, gen_z, gen_c)])
    return per_phase


def run_iteration(
    phases: Sequence[Phase],
    loss: StyleGAN2Loss,
    rounds: Sequence[Sequence[PhaseRound]],
    batch_idx: int,
    timer: PhaseTimer,
) -> None:
    """Run every phase that is due at `batch_idx` through its update rule, timed (never waiting for the device)."""
    for phase, phase_rounds in zip(phases, rounds):
        if batch_idx % phase.interval != 0:
            continue
        with timer.phase(phase.name):
            phase.update(phase, loss, phase_rounds)


@torch.no_grad()
def update_ema(
    G: torch.nn.Module,
    G_ema: torch.nn.Module,
    cur_nimg: int,
    batch_size: int,
    ema_kimg: float,
    ema_rampup: float | None,
) -> None:
    """G_ema <- lerp(G, G_ema, beta) with a half-life of ema_kimg (ramped up as cur_nimg * ema_rampup)."""
    ema_nimg = ema_kimg * 1000
    if ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    beta = 0.5 ** (batch_size / max(ema_nimg, 1e-8))
    # Multi-tensor ops: a few kernel launches on a GPU instead of two per tensor; the same lerp per element.
    params, ema_params = list(G.parameters()), list(G_ema.parameters())
    torch._foreach_copy_(ema_params, torch._foreach_lerp(params, ema_params, beta))
    buffers, ema_buffers = list(G.buffers()), list(G_ema.buffers())
    if buffers:
        torch._foreach_copy_(ema_buffers, buffers)


def update_ada(nets: Nets) -> None:
    """Count one iteration for the ADA controller; every `ada_interval` iterations it adjusts p."""
    if nets.ada is not None:
        nets.ada.step(nets.augment_pipe)


# ---------------------------------------------------------------------------------------------------------------
# Ticks: logging, grids, snapshots, metrics, checkpoint.


class RunOutputs:
    """Everything a tick writes (rank 0 only): stats.jsonl, TensorBoard events, grids, snapshots, metrics."""

    def __init__(self, run_dir: str, rank: int):
        self.run_dir = run_dir
        self.rank = rank
        self.stats_jsonl = None
        self.tensorboard = None
        if rank == 0:
            self.stats_jsonl = open(os.path.join(run_dir, "stats.jsonl"), "a")
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tensorboard = SummaryWriter(run_dir)
            except ImportError as exc:
                print(f"Skipping TensorBoard export ({exc})")

    def write_stats(self, stats: dict, metrics: dict, cur_nimg: int, timestamp: float) -> None:
        if self.rank != 0:
            return
        self.stats_jsonl.write(json.dumps(dict(stats, timestamp=timestamp)) + "\n")
        self.stats_jsonl.flush()
        if self.tensorboard is not None:
            step = int(cur_nimg / 1000)
            for name, value in stats.items():
                self.tensorboard.add_scalar(name, value["mean"], global_step=step, walltime=timestamp)
            for name, value in metrics.items():
                self.tensorboard.add_scalar(f"Metrics/{name}", value, global_step=step, walltime=timestamp)
            self.tensorboard.flush()

    def close(self) -> None:
        if self.stats_jsonl is not None:
            self.stats_jsonl.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


@dataclasses.dataclass
class ImageGrid:
    """Fixed reals, latents and labels shown at every image snapshot."""

    size: tuple[int, int]
    z: torch.Tensor
    c: torch.Tensor
    row_labels: list[str] | None = None  # each row's class, for a conditional grid


def setup_image_grid(
    training_set: Any, run_dir: str, seed: int, grid_size: tuple[int, int] | None, z_dim: int, device: torch.device
) -> ImageGrid:
    """Write reals.png and return the grid's fixed latents/labels (rows grouped by class when conditional)."""
    gw, gh = grid_size or grid_shape(training_set.resolution)
    labels = (
        np.stack([training_set.get_label(i) for i in range(len(training_set))]) if training_set.has_labels else None
    )
    indices = choose_grid_indices(labels, len(training_set), gw, gh, seed)
    images = np.stack([training_set[i][0] for i in indices])
    rows = (
        row_names(labels[indices], gw, getattr(training_set, "metadata", {}).get("class_names"))
        if labels is not None and labels.shape[1] > 0
        else None
    )
    save_image_grid(
        images,
        os.path.join(run_dir, "reals.png"),
        drange=(0, 255),
        grid_size=(gw, gh),
        row_labels=rows,
        min_tile=LEGIBLE_TILE,
    )
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn([len(indices), z_dim], generator=generator).to(device)
    c = torch.from_numpy(np.stack([training_set.get_label(i) for i in indices])).to(device)
    return ImageGrid(size=(gw, gh), z=z, c=c, row_labels=rows)


@torch.no_grad()
def save_fakes(G_ema: torch.nn.Module, grid: ImageGrid, path: str, batch_gpu: int) -> None:
    images = [
        G_ema(z=z, c=c, noise_mode="const").cpu() for z, c in zip(grid.z.split(batch_gpu), grid.c.split(batch_gpu))
    ]
    save_image_grid(
        torch.cat(images).numpy(),
        path,
        drange=(-1, 1),
        grid_size=grid.size,
        row_labels=grid.row_labels,
        min_tile=LEGIBLE_TILE,
    )


def cpu_copy(module: torch.nn.Module | None) -> torch.nn.Module | None:
    return None if module is None else copy.deepcopy(module).eval().requires_grad_(False).cpu()


def kimg_tag(cur_nimg: int, fine: bool) -> str:
    """The kimg in snapshot and grid names: '000040' as officially, or to the image ('000000.016') in runs whose
    snapshots can come less than 1 kimg apart, so that none overwrites another; either way names sort in order."""
    return f"{cur_nimg // 1000:06d}" + (f".{cur_nimg % 1000:03d}" if fine else "")


def needs_fine_names(total_kimg: float, kimg_per_tick: float, snapshot_ticks: Sequence[int | None]) -> bool:
    """Whole-kimg names are unique when snapshots are at least 1 kimg apart and the run ends on a whole kimg."""
    ticks = [t for t in snapshot_ticks if t is not None]
    return total_kimg != int(total_kimg) or (bool(ticks) and kimg_per_tick * min(ticks) < 1)


def save_snapshot(
    nets: Nets,
    run_dir: str,
    cur_nimg: int,
    training_set_kwargs: dict,
    extra_metadata: dict | None = None,
    fine_names: bool = False,
) -> str:
    """network-snapshot-<kimg_tag>.pkl (written atomically by training.serialization); returns its path."""
    from training.serialization import save_network_snapshot

    path = os.path.join(run_dir, f"network-snapshot-{kimg_tag(cur_nimg, fine_names)}.pkl")
    save_network_snapshot(
        path,
        G=cpu_copy(nets.G),
        D=cpu_copy(nets.D),
        G_ema=cpu_copy(nets.G_ema),
        augment_pipe=cpu_copy(nets.augment_pipe),
        training_set_kwargs=dict(training_set_kwargs),
        metadata=dict(extra_metadata or {}, cur_nimg=cur_nimg),
    )
    return path


MetricFn = Callable[..., dict]  # metrics.metric_main.calc_metric's signature: (metric=, G=, dataset_kwargs=, ...)


def run_metrics(
    metrics: Sequence[str],
    G_ema: torch.nn.Module,
    training_set_kwargs: dict,
    snapshot_pkl: str,
    run_dir: str,
    rank: int,
    world: int,
    device: torch.device,
    metric_kwargs: dict | None = None,
    metric_fn: MetricFn | None = None,
) -> dict[str, float]:
    """Evaluate each metric on G_ema with `metric_fn` and append it to metric-<name>.jsonl; returns {result name:
    value}. `metric_kwargs` are extra metric options, e.g. the spine classifier of the domain metrics.
    """
    if not metrics:
        return {}
    if metric_fn is None:
        raise ValueError(f"metrics {list(metrics)} were asked for but no metric_fn was given to compute them")
    values = {}
    for metric in metrics:
        result = dict(
            metric_fn(
                metric=metric,
                G=G_ema,
                dataset_kwargs=training_set_kwargs,
                num_gpus=world,
                rank=rank,
                device=device,
                **(metric_kwargs or {}),
            )
        )
        if rank == 0:
            line = dict(result, snapshot_pkl=os.path.relpath(snapshot_pkl, run_dir), timestamp=time.time())
            print(json.dumps(line))
            with open(os.path.join(run_dir, f"metric-{metric}.jsonl"), "a") as f:
                f.write(json.dumps(line) + "\n")
        values.update(result.get("results", {}))
    return values


def time_left(progress: Progress, total_kimg: float, sec_per_kimg: float) -> str:
    """Estimated time to total_kimg at the last tick's speed ('-' at tick 0, whose time is mostly start-up)."""
    if progress.cur_tick == 0:
        return "-"
    return dnnlib.util.format_time(max(total_kimg - progress.cur_nimg / 1000, 0) * sec_per_kimg)


def report_progress(
    progress: Progress,
    nets: Nets,
    total_kimg: float,
    start_time: float,
    tick_start_time: float,
    tick_end_time: float,
    maintenance_time: float,
    device: torch.device,
) -> str:
    """Report Progress/*, Timing/* and Resources/* and return the one-line status."""
    cur_nimg = progress.cur_nimg
    tick_kimg = (cur_nimg - progress.tick_start_nimg) / 1000
    total_sec = tick_end_time - start_time
    sec_per_tick = tick_end_time - tick_start_time
    sec_per_kimg = sec_per_tick / max(tick_kimg, 1e-8)
    cpu_mem = psutil.Process(os.getpid()).memory_info().rss / 2**30
    peak_cpu = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    peak_gpu = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    p = float(nets.augment_pipe.p) if nets.augment_pipe is not None else 0.0
    if nets.ada is not None:
        nets.ada.warn_if_high(p)
    report = training_stats.report0
    fields = [
        f"tick {report('Progress/tick', progress.cur_tick):<5d}",
        f"kimg {report('Progress/kimg', cur_nimg / 1000):<8.1f}",
        f"time {dnnlib.util.format_time(total_sec):<12s}",
        f"sec/tick {report('Timing/sec_per_tick', sec_per_tick):<7.1f}",
        f"sec/kimg {report('Timing/sec_per_kimg', sec_per_kimg):<7.2f}",
        f"left {time_left(progress, total_kimg, sec_per_kimg):<8}",
        f"maintenance {report('Timing/maintenance_sec', maintenance_time):<6.1f}",
        f"cpumem {report('Resources/cpu_mem_gb', cpu_mem):<6.2f}",
        f"peakcpu {report('Resources/peak_cpu_mem_gb', peak_cpu):<6.2f}",
        f"gpumem {report('Resources/peak_gpu_mem_gb', peak_gpu):<6.2f}",
        f"augment {report('Progress/augment', p):.3f}",
    ]
    report("Timing/total_sec", total_sec)
    report("Timing/total_hours", total_sec / 3600)
    report("Timing/total_days", total_sec / 86400)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    return " ".join(fields)


# ---------------------------------------------------------------------------------------------------------------
# The loop.


def training_loop(
    run_dir: str = ".",  # where every output goes (rank 0 writes; the directory must exist)
    training_set_kwargs: dict = {},  # training.dataset.construct_dataset kwargs (path, use_labels, max_size, ...)
    data_loader_kwargs: dict = {},  # torch DataLoader kwargs of the shuffled stream (num_workers, pin_memory, ...)
    G_kwargs: dict = {},  # training.networks.Generator kwargs; c_dim, resolution and channels come from the data
    D_kwargs: dict = {},  # training.networks.Discriminator kwargs; likewise
    G_opt_kwargs: dict = {},  # Adam kwargs of G (lr, betas, eps) before the lazy-regularisation adjustment
    D_opt_kwargs: dict = {},  # Adam kwargs of D, likewise
    augment_kwargs: dict | None = None,  # training.augment.AugmentPipe kwargs; None = no augmentation
    loss_kwargs: dict = {},  # training.loss.StyleGAN2Loss kwargs (r1_gamma, pl_weight, style_mixing_prob, ...)
    metrics: Sequence[str] = (),  # metric names evaluated at every network snapshot (metrics.metric_names)
    metric_kwargs: dict | None = None,  # extra metrics.metric_main.calc_metric options, e.g. the spine classifier
    random_seed: int = 0,  # global seed; process r seeds its RNGs with seed * num_gpus + r
    num_gpus: int = 1,  # number of processes (the world size under torchrun)
    rank: int = 0,  # this process's rank
    batch_size: int = 4,  # images per iteration over all processes
    batch_gpu: int = 4,  # images per accumulation round and process (memory bound)
    ema_kimg: float = 10,  # half-life of G_ema in thousands of images
    ema_rampup: float | None = None,  # EMA ramp-up: half-life at most cur_nimg * ema_rampup; None = off
    G_reg_interval: int | None = 4,  # lazy path-length regularisation every N iterations; None = Gboth each step
    D_reg_interval: int | None = 16,  # lazy R1 every N iterations; None = Dboth each step
    augment_p: float = 0,  # initial augmentation probability
    ada_target: float | None = None,  # ADA target for r_t; None = fixed p
    ada_interval: int = 4,  # iterations between ADA adjustments of p
    ada_kimg: float = 500,  # ADA speed: thousands of images for p to move from 0 to 1
    total_kimg: float = 25000,  # training length in thousands of images
    kimg_per_tick: float = 4,  # thousands of images between status lines (ticks)
    image_snapshot_ticks: int | None = 50,  # fakes grid every N ticks; None = no grids (no reals.png either)
    network_snapshot_ticks: int | None = 50,  # snapshot, metrics and checkpoint every N ticks; None = never
    resume_pkl: str | None = None,  # network snapshot (path or URL) whose weights initialise G, D, G_ema
    resume_checkpoint: str | None = None,  # checkpoint.pt to continue exactly
    cudnn_benchmark: bool = True,  # torch.backends.cudnn.benchmark
    allow_tf32: bool = False,  # TF32 in matmul and cuDNN
    cuda_graphs: bool = False,  # capture each phase as a CUDA graph (training.graph_capture; one CUDA process)
    image_grid_size: tuple[int, int] | None = None,  # (columns, rows) of the grids; None = from the resolution
    plugins: LoopPlugins | None = None,  # update rules, generator terms, fake labels, ... (training.loop_plugins)
    abort_fn: Callable[[], bool | str] | None = None,  # asked at every tick; True or a reason ends the run
    metric_fn: MetricFn | None = None,  # computes one metric (metrics.metric_main.calc_metric); needed for `metrics`
    progress_fn: Callable[[int, int], None] | None = None,  # called with (kimg done, total kimg) at every tick
    options: dict | None = None,  # the JSON-able options of the run, stored in the checkpoint
) -> None:
    """Train G and D; writes grids, stats, snapshots and checkpoints into `run_dir` (rank 0 only)."""
    start_time = time.time()
    device = pick_device(rank)
    world = num_gpus
    if batch_size % (batch_gpu * world) != 0:
        raise ValueError(f"batch_size {batch_size} must be a multiple of batch_gpu {batch_gpu} x processes {world}")
    batch_per_rank = batch_size // world
    setup_runtime(random_seed, rank, world, device, cudnn_benchmark, allow_tf32)
    is_main = rank == 0

    # Progress counters come first: the data stream starts where the checkpoint stopped.
    resume_data = ckpt.load_checkpoint(resume_checkpoint) if resume_checkpoint is not None else None
    start_batch = resume_data["progress"]["batch_idx"] if resume_data is not None else 0
    if is_main:
        print("Loading training set...")
    plugins = plugins or LoopPlugins()
    named = plugins.named()
    training_set, real_batches = load_training_data(
        training_set_kwargs,
        data_loader_kwargs,
        rank,
        world,
        random_seed,
        batch_per_rank,
        start_batch * batch_per_rank,
        device,
        plugins.real_sampling,
    )
    if is_main:
        print(
            f"Num images: {len(training_set)}  image shape: {training_set.image_shape}  "
            f"label shape: {training_set.label_shape}\nConstructing networks..."
        )

    nets = build_networks(
        training_set,
        G_kwargs,
        D_kwargs,
        augment_kwargs,
        augment_p,
        ada_target,
        dict(interval=ada_interval, ada_kimg=ada_kimg),
        batch_size,
        device,
    )
    if is_main:
        print(precision_summary(dict(G=nets.G, D=nets.D), device))
    if resume_pkl is not None and is_main:
        init_from_snapshot(resume_pkl, nets)
    for module in (nets.G, nets.D, nets.G_ema, nets.augment_pipe):
        if module is not None:
            dist_utils.broadcast_module_(module)

    loss = StyleGAN2Loss(
        device=device,
        G=nets.G,
        D=nets.D,
        augment_pipe=nets.augment_pipe,
        generator_terms=plugins.generator_terms,
        ada_controller=nets.ada,
        **loss_kwargs,
    )
    phases = build_phases(
        nets,
        loss,
        G_opt_kwargs,
        D_opt_kwargs,
        G_reg_interval,
        D_reg_interval,
        plugins.discriminator_update or GradientStep(),
        plugins.generator_update,
    )
    progress = Progress()
    rng_state = None
    if resume_data is not None:
        progress, rng_state = resume_from_checkpoint(resume_data, resume_checkpoint, nets, loss, phases, rank, world)
        restore_plugin_states(resume_data.get("plugins", {}), resume_checkpoint, named)
        del resume_data

    if cuda_graphs:
        if device.type != "cuda" or world > 1:
            raise ValueError(f"cuda_graphs needs one process on a CUDA device, got {world} on {device.type}")
        phases = graph_capture.make_capturable(phases, loss)
    if is_main:
        print(graph_capture.describe(cuda_graphs, device))

    outputs = RunOutputs(run_dir, rank)
    grid = None
    if is_main and image_snapshot_ticks is not None:
        with ckpt.preserved_rng_state():
            grid = setup_image_grid(training_set, run_dir, random_seed, image_grid_size, nets.G.z_dim, device)
            if resume_checkpoint is None:
                save_fakes(nets.G_ema, grid, os.path.join(run_dir, "fakes_init.png"), batch_gpu)
    if rng_state is not None:
        ckpt.restore_rng_state(rng_state)  # last, so nothing above shifts the restored streams

    fine_names = needs_fine_names(total_kimg, kimg_per_tick, [image_snapshot_ticks, network_snapshot_ticks])
    if is_main:
        print(f"Training for {total_kimg} kimg...\n")
    stats_collector = training_stats.Collector(regex=".*")
    timer = PhaseTimer(device)
    fake_labels = fake_label_sampler(training_set, device, plugins.fake_labels)
    tick_start_time = time.time()
    maintenance_time = tick_start_time - start_time
    if progress_fn is not None:
        progress_fn(progress.cur_nimg // 1000, int(total_kimg))

    def save_checkpoint() -> None:
        """The state the next iteration starts from (progress counters already advanced)."""
        write_checkpoint(
            os.path.join(run_dir, ckpt.FILE_NAME),
            nets,
            loss,
            phases,
            progress,
            training_set_kwargs,
            options or {},
            is_main,
            named,
        )

    try:
        while True:
            signum = interrupt.stop_requested(progress.cur_nimg == progress.tick_start_nimg, world)
            if signum:  # Ctrl-C or SIGTERM: save the state this iteration would start from, then stop
                save_checkpoint()
                raise interrupt.Interrupted(signum, progress.cur_nimg)
            rounds = fetch_rounds(
                real_batches, fake_labels, nets.G.z_dim, len(phases), batch_per_rank, batch_gpu, device
            )
            run_iteration(phases, loss, rounds, progress.batch_idx, timer)
            update_ema(nets.G, nets.G_ema, progress.cur_nimg, batch_size, ema_kimg, ema_rampup)
            progress.cur_nimg += batch_size
            progress.batch_idx += 1
            update_ada(nets)

            done = progress.cur_nimg >= total_kimg * 1000
            if (
                not done
                and progress.cur_tick != 0
                and progress.cur_nimg < progress.tick_start_nimg + kimg_per_tick * 1000
            ):
                continue
            timer.flush()  # the tick's one wait for the device: its phase times, and an honest tick time
            tick_end_time = time.time()
            status = report_progress(
                progress, nets, total_kimg, start_time, tick_start_time, tick_end_time, maintenance_time, device
            )
            status += plugin_tick_report(named)
            if is_main:
                print(status)
            reason = (abort_fn() if abort_fn is not None else None) or plugin_stop_reason(named)
            if reason:  # a clean stop: this tick writes the final snapshot and checkpoint
                done = True
                if is_main:
                    print(reason if isinstance(reason, str) else "Aborting...")
            with ckpt.preserved_rng_state():
                metric_values = run_tick_outputs(
                    progress,
                    nets,
                    grid,
                    run_dir,
                    training_set_kwargs,
                    metrics,
                    image_snapshot_ticks,
                    network_snapshot_ticks,
                    batch_gpu,
                    done,
                    rank,
                    world,
                    device,
                    plugin_metadata(named),
                    metric_kwargs,
                    fine_names,
                    metric_fn,
                )
            stats_collector.update()
            outputs.write_stats(stats_collector.as_dict(), metric_values, progress.cur_nimg, time.time())
            if progress_fn is not None:
                progress_fn(progress.cur_nimg // 1000, int(total_kimg))

            snapshot_due = network_snapshot_ticks is not None and (
                done or progress.cur_tick % network_snapshot_ticks == 0
            )
            progress.cur_tick += 1
            progress.tick_start_nimg = progress.cur_nimg
            if snapshot_due:  # after the counters advance: the checkpoint is the state the next iteration starts from
                save_checkpoint()
            tick_start_time = time.time()
            maintenance_time = tick_start_time - tick_end_time
            if done:
                break
    finally:
        outputs.close()
    if is_main:
        print("\nExiting...")


def run_tick_outputs(
    progress: Progress,
    nets: Nets,
    grid: ImageGrid | None,
    run_dir: str,
    training_set_kwargs: dict,
    metrics: Sequence[str],
    image_snapshot_ticks: int | None,
    network_snapshot_ticks: int | None,
    batch_gpu: int,
    done: bool,
    rank: int,
    world: int,
    device: torch.device,
    snapshot_metadata: dict | None = None,
    metric_kwargs: dict | None = None,
    fine_names: bool = False,
    metric_fn: MetricFn | None = None,
) -> dict[str, float]:
    """Image grid, network snapshot and metrics when due at this tick; returns the metric values.

    `fine_names`: name the files to the image (see `kimg_tag`)."""
    tick = progress.cur_tick
    if grid is not None and (done or tick % image_snapshot_ticks == 0):
        save_fakes(
            nets.G_ema, grid, os.path.join(run_dir, f"fakes{kimg_tag(progress.cur_nimg, fine_names)}.png"), batch_gpu
        )
    if network_snapshot_ticks is None or not (done or tick % network_snapshot_ticks == 0):
        return {}
    metadata = dict(snapshot_metadata or {})
    if (metric_kwargs or {}).get("classifier"):
        metadata["metrics_classifier"] = metric_kwargs["classifier"]  # calc_metrics.py's default for spine metrics
    snapshot_pkl = (
        save_snapshot(nets, run_dir, progress.cur_nimg, training_set_kwargs, metadata, fine_names) if rank == 0 else ""
    )
    return run_metrics(
        metrics, nets.G_ema, training_set_kwargs, snapshot_pkl, run_dir, rank, world, device, metric_kwargs, metric_fn
    )


def write_checkpoint(
    path: str,
    nets: Nets,
    loss: StyleGAN2Loss,
    phases: Sequence[Phase],
    progress: Progress,
    training_set_kwargs: dict,
    options: dict,
    is_main: bool,
    plugins: dict[str, Plugin],
) -> None:
    """Gather every process's RNG and ADA state, then rank 0 writes the checkpoint atomically."""
    process_states = dist_utils.all_gather_object(
        dict(rng=ckpt.capture_rng_state(), ada=nets.ada.state_dict() if nets.ada is not None else None)
    )
    if not is_main:
        return
    ckpt.save_checkpoint(
        path,
        nets=dict(G=nets.G, D=nets.D, G_ema=nets.G_ema, augment_pipe=nets.augment_pipe),
        optimizers=optimizers_by_name(phases),
        pl_mean=float(loss.pl_mean),
        progress=dataclasses.asdict(progress),
        process_states=process_states,
        training_set_kwargs=training_set_kwargs,
        options=options,
        plugin_states=plugin_states(plugins),
    )

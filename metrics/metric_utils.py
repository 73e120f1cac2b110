"""Shared machinery of the metrics: options, feature statistics, and the real and evaluated feature passes.

Real images go through the detector once per (dataset content, detector, options): the statistics are cached at
`<cache>/gan-metrics/<dataset>-<detector>-<md5>.npz` (or in an explicit `cache_dir`), the md5 taken over the
dataset kwargs, a fingerprint of the dataset's files (names, sizes, mtimes), the detector key (weights' SHA-1 and
the versioned preprocessing) and the statistics options. The evaluated set is either generated images (a seeded z,
labels drawn from the dataset for conditional networks, converted to uint8 as generate.py saves them) or, with
`dataset2_kwargs`, the images of a second dataset (a real-vs-real baseline). With several processes each rank takes
a contiguous part of every chunk and the features are all-gathered, so that every rank ends with the same
statistics, in the same order as a single process. With a `feature_memo`, several metrics of one evaluation (FID
and precision/recall in Inception features, say, and their real-vs-real baseline) share every set's features:
each set goes through the detector once, keeping all features and the mean/covariance sums.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import tqdm

import dnnlib
from metrics.detectors import Detector
from training.dataset import construct_dataset


@dataclasses.dataclass
class MetricOptions:
    """Everything a metric needs besides its own definition."""

    G: torch.nn.Module | None = None
    dataset_kwargs: dict = dataclasses.field(default_factory=dict)
    dataset2_kwargs: dict | None = None  # a second dataset evaluated in place of G's images
    num_gpus: int = 1
    rank: int = 0
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    detector: str | None = None  # explicit Inception path or URL
    vgg16: str | None = None  # explicit VGG16 path or URL (precision/recall)
    classifier: str | None = None  # classifier.pkl for the spine-feature metrics
    cache: bool = True  # reuse and write real-image statistics
    cache_dir: str | None = None  # where they go; None = the dnnlib cache (<cache>/gan-metrics)
    progress: bool = True  # tqdm bars (rank 0 only)
    seed: int = 0  # z, labels and real subsets
    batch_size: int = 64  # images per detector call
    batch_gen: int = 4  # images per generator call
    # Features (and generated images) already computed, by set, shared by the metrics given the same dict: on CPU the
    # detector pass is the cost (Inception reads about 14 images/s on 2 cores). Each set is then captured whole (all
    # features and the mean/covariance sums), so keep it to evaluations of a few thousand images.
    feature_memo: dict[str, Any] | None = None


# ----------------------------------------------------------------------------------------------------------------
# Feature statistics.


class FeatureStats:
    """Accumulates detector features: all of them (KID, PR) and/or float64 sums for mean and covariance (FID)."""

    def __init__(self, capture_all: bool = False, capture_mean_cov: bool = False, max_items: int | None = None):
        self.capture_all = capture_all
        self.capture_mean_cov = capture_mean_cov
        self.max_items = max_items
        self.num_items = 0
        self.num_features: int | None = None
        self.all_features: list[np.ndarray] = []
        self.raw_mean: np.ndarray | None = None
        self.raw_cov: np.ndarray | None = None

    def is_full(self) -> bool:
        return self.max_items is not None and self.num_items >= self.max_items

    def append(self, x: np.ndarray | torch.Tensor) -> None:
        """Add feature rows [N, D] (rows past `max_items` are dropped)."""
        x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        x = x.astype(np.float32)
        if x.ndim != 2:
            raise ValueError(f"features must be [N, D], got shape {x.shape}")
        if self.num_features is None:
            self.num_features = x.shape[1]
            if self.capture_mean_cov:
                self.raw_mean = np.zeros([x.shape[1]], dtype=np.float64)
                self.raw_cov = np.zeros([x.shape[1], x.shape[1]], dtype=np.float64)
        if x.shape[1] != self.num_features:
            raise ValueError(f"features have {x.shape[1]} columns, expected {self.num_features}")
        if self.max_items is not None:
            x = x[: max(self.max_items - self.num_items, 0)]
        self.num_items += x.shape[0]
        if self.capture_all:
            self.all_features.append(x)
        if self.capture_mean_cov:
            x64 = x.astype(np.float64)
            self.raw_mean += x64.sum(axis=0)
            self.raw_cov += x64.T @ x64

    def get_all(self) -> np.ndarray:
        if not self.capture_all:
            raise RuntimeError("FeatureStats built without capture_all")
        return (
            np.concatenate(self.all_features)
            if self.all_features
            else np.zeros([0, self.num_features or 0], np.float32)
        )

    def get_mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and (population, 1/N) covariance, float64."""
        if not self.capture_mean_cov or self.num_items == 0:
            raise RuntimeError("FeatureStats holds no mean/covariance sums")
        mean = self.raw_mean / self.num_items
        return mean, self.raw_cov / self.num_items - np.outer(mean, mean)

    def save(self, path: str) -> None:
        """Write the statistics as .npz, atomically (no pickles: read back with allow_pickle=False)."""
        arrays: dict[str, Any] = dict(
            num_items=np.int64(self.num_items),
            num_features=np.int64(self.num_features),
            capture_all=self.capture_all,
            capture_mean_cov=self.capture_mean_cov,
        )
        if self.capture_all:
            arrays["all_features"] = self.get_all()
        if self.capture_mean_cov:
            arrays.update(raw_mean=self.raw_mean, raw_cov=self.raw_cov)
        with dnnlib.atomic_write(path, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str) -> FeatureStats:
        with np.load(path, allow_pickle=False) as data:
            stats = cls(capture_all=bool(data["capture_all"]), capture_mean_cov=bool(data["capture_mean_cov"]))
            stats.num_items = int(data["num_items"])
            stats.num_features = int(data["num_features"])
            if stats.capture_all:
                stats.all_features = [data["all_features"]]
            if stats.capture_mean_cov:
                stats.raw_mean, stats.raw_cov = data["raw_mean"], data["raw_cov"]
        return stats


# ----------------------------------------------------------------------------------------------------------------
# Chunked, rank-split feature passes.


def rank_slices(num_items: int, opts: MetricOptions) -> Iterator[tuple[int, np.ndarray, int]]:
    """(chunk start, this rank's positions in the chunk, valid count) per chunk of batch_size * num_gpus items.

    Rank r takes positions [r * batch_size, (r + 1) * batch_size) of each chunk. With several processes every
    rank processes exactly batch_size positions (past the end of the data they repeat the chunk's last item), so
    that all ranks take part in every all-gather; a single process just takes the valid ones.
    """
    chunk = opts.batch_size * opts.num_gpus
    for start in range(0, num_items, chunk):
        count = min(chunk, num_items - start)
        if opts.num_gpus == 1:
            yield start, np.arange(count), count
            continue
        positions = opts.rank * opts.batch_size + np.arange(opts.batch_size)
        yield start, np.minimum(positions, count - 1), count


def gather_chunk(features: torch.Tensor, count: int, opts: MetricOptions) -> torch.Tensor:
    """Features of the whole chunk, in index order, on every rank (trimmed to the chunk's valid count)."""
    if opts.num_gpus > 1:
        parts = [torch.empty_like(features) for _ in range(opts.num_gpus)]
        torch.distributed.all_gather(parts, features.contiguous())
        features = torch.cat(parts)
    return features[:count]


def progress_bar(opts: MetricOptions, total: int, desc: str) -> tqdm.tqdm:
    return tqdm.tqdm(
        total=total, desc=desc, unit="img", disable=not opts.progress or opts.rank != 0, dynamic_ncols=True, leave=False
    )


# ----------------------------------------------------------------------------------------------------------------
# Real images.


def dataset_fingerprint(path: str) -> str:
    """md5 over the dataset's file names, sizes and mtimes (a folder) or the file's size and mtime (a zip)."""
    if os.path.isdir(path):
        entries = []
        for root, _dirs, files in os.walk(path):
            for name in files:
                full = os.path.join(root, name)
                st = os.stat(full)
                entries.append((os.path.relpath(full, path), st.st_size, st.st_mtime_ns))
        entries.sort()
    else:
        st = os.stat(path)
        entries = [(os.path.basename(path), st.st_size, st.st_mtime_ns)]
    return hashlib.md5(repr(entries).encode("utf-8")).hexdigest()


def stats_cache_path(dataset_name: str, detector: Detector, key: dict, cache_dir: str | None = None) -> str:
    """<cache_dir or the dnnlib cache's gan-metrics>/<dataset>-<detector>-<md5 of the key>.npz."""
    digest = hashlib.md5(json.dumps(key, sort_keys=True, default=str).encode("utf-8")).hexdigest()
    name = f"{dataset_name}-{detector.name}-{digest}.npz"
    return os.path.join(cache_dir, name) if cache_dir is not None else dnnlib.make_cache_dir_path("gan-metrics", name)


def select_real_indices(dataset: Any, max_items: int | None, class_index: int | None, seed: int) -> np.ndarray:
    """All dataset indices (optionally of one class), or a seeded subset of `max_items` of them, sorted."""
    indices = np.arange(len(dataset))
    if class_index is not None:
        if not dataset.has_onehot_labels:
            raise ValueError("per-class metrics need a dataset with class labels (integer labels in dataset.json)")
        labels = np.stack([dataset.get_label(int(i)) for i in indices])
        indices = indices[labels.argmax(axis=1) == class_index]
        if indices.size == 0:
            raise ValueError(f"the dataset has no image of class {class_index}")
    if max_items is not None and max_items < indices.size:
        indices = np.sort(np.random.RandomState(seed).choice(indices, max_items, replace=False))
    return indices


def compute_feature_stats_for_dataset(
    opts: MetricOptions,
    detector: Detector,
    *,
    max_items: int | None = None,
    full: bool = False,
    class_index: int | None = None,
    capture_all: bool = False,
    capture_mean_cov: bool = False,
    dataset_kwargs: dict | None = None,
) -> FeatureStats:
    """Detector statistics of real images, from the cache when the dataset, detector and options are unchanged.

    `full` uses every image without x-flips (the official *_full definitions); otherwise the dataset kwargs are
    kept as given (including x-flips) and at most `max_items` images are drawn with the metric seed. The dataset
    is `opts.dataset_kwargs` unless `dataset_kwargs` names another one.
    """
    dataset_kwargs = dict(opts.dataset_kwargs if dataset_kwargs is None else dataset_kwargs)
    if opts.feature_memo is not None:
        capture_all = capture_mean_cov = True
    if full:
        dataset_kwargs.update(xflip=False, max_size=None)
    if class_index is not None:
        dataset_kwargs.update(use_labels=True)
    key = dict(
        dataset_kwargs=dataset_kwargs,
        fingerprint=dataset_fingerprint(dataset_kwargs["path"]),
        detector=detector.key,
        stats=dict(
            max_items=max_items,
            full=full,
            class_index=class_index,
            capture_all=capture_all,
            capture_mean_cov=capture_mean_cov,
            seed=opts.seed,
        ),
    )
    dataset = construct_dataset(dataset_kwargs)
    cache_file = stats_cache_path(dataset.name, detector, key, opts.cache_dir)
    if opts.feature_memo is not None and cache_file in opts.feature_memo:
        return opts.feature_memo[cache_file]
    if opts.cache and os.path.isfile(cache_file):
        return _remember(opts, cache_file, FeatureStats.load(cache_file))

    indices = select_real_indices(dataset, max_items, class_index, opts.seed)
    stats = FeatureStats(capture_all=capture_all, capture_mean_cov=capture_mean_cov)
    with progress_bar(opts, indices.size, f"{detector.name} features of {dataset.name}") as bar:
        for start, positions, count in rank_slices(indices.size, opts):
            images = torch.from_numpy(np.stack([dataset[int(i)][0] for i in indices[start + positions]]))
            with torch.no_grad():
                stats.append(gather_chunk(detector(images), count, opts))
            bar.update(count)
    if opts.cache and opts.rank == 0:
        stats.save(cache_file)
    return _remember(opts, cache_file, stats)


def _remember(opts: MetricOptions, key: str, stats: FeatureStats) -> FeatureStats:
    if opts.feature_memo is not None:
        opts.feature_memo[key] = stats
    return stats


# ----------------------------------------------------------------------------------------------------------------
# Generated images.


def generated_to_uint8(img: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] -> the uint8 pixels generate.py saves."""
    return (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def sample_labels(opts: MetricOptions, num: int, class_index: int | None, rng: np.random.RandomState) -> np.ndarray:
    """Conditioning labels [num, c_dim]: one class, or drawn from the dataset's labels (official behaviour)."""
    c_dim = opts.G.c_dim
    if c_dim == 0:
        return np.zeros([num, 0], dtype=np.float32)
    if class_index is not None:
        if not 0 <= class_index < c_dim:
            raise ValueError(f"class {class_index} out of range for a generator with c_dim={c_dim}")
        return np.eye(c_dim, dtype=np.float32)[np.full(num, class_index)]
    labels = _dataset_labels(opts)
    return labels[rng.randint(len(labels), size=num)]


_LABELS: dict[str, np.ndarray] = {}


def _dataset_labels(opts: MetricOptions) -> np.ndarray:
    """All labels of the dataset [N, c_dim] (memoised per dataset kwargs; labels are read from dataset.json only)."""
    kwargs = dict(opts.dataset_kwargs, use_labels=True)
    memo = json.dumps(kwargs, sort_keys=True, default=str)
    if memo not in _LABELS:
        dataset = construct_dataset(kwargs)
        labels = np.stack([dataset.get_label(i) for i in range(len(dataset))]).astype(np.float32)
        if labels.shape[1] != opts.G.c_dim:
            raise ValueError(
                f"{kwargs['path']}: labels of dimension {labels.shape[1]}, but the generator has c_dim={opts.G.c_dim}"
            )
        _LABELS[memo] = labels
    return _LABELS[memo]


def generate_images(opts: MetricOptions, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """uint8 images for the given z and c, batch_gen at a time."""
    parts = []
    for start in range(0, z.shape[0], opts.batch_gen):
        zs = z[start : start + opts.batch_gen].to(opts.device)
        cs = c[start : start + opts.batch_gen].to(opts.device)
        parts.append(generated_to_uint8(opts.G(zs, cs)))
    return torch.cat(parts)


# A feature memo also keeps the generated images of a draw up to this size (uint8 bytes: 500 images at 32x32 take
# 0.5 MB), so that the next detector or metric (the spine classifier's features after Inception's, the class means)
# does not run the generator again: on a CPU, 500 demo samples cost about as much as a small detector's pass.
MEMO_IMAGE_BYTES = 2**28


def generated_batches(
    opts: MetricOptions, num_gen: int, class_index: int | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
    """(uint8 images, their labels [n, c_dim], valid count) of `num_gen` seeded samples, chunk by chunk as
    rank_slices gives them; sample i is the same whatever the batch size and process count."""
    if opts.G is None:
        raise ValueError("this metric needs a generator")
    key = f"generated images of G {id(opts.G)}: {num_gen}, class {class_index}, seed {opts.seed}"
    if opts.feature_memo is not None and key in opts.feature_memo:
        yield from opts.feature_memo[key]
        return
    size = num_gen * opts.G.img_channels * opts.G.img_resolution**2
    kept: list[tuple[torch.Tensor, torch.Tensor, int]] | None = (
        [] if opts.feature_memo is not None and size <= MEMO_IMAGE_BYTES else None
    )
    # All latents and labels are drawn up front (50k x 512 floats = 100 MB).
    z_all = torch.randn([num_gen, opts.G.z_dim], generator=torch.Generator().manual_seed(opts.seed))
    c_all = torch.from_numpy(sample_labels(opts, num_gen, class_index, np.random.RandomState(opts.seed)))
    devices = [opts.device] if opts.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(opts.seed + opts.rank)  # per-pixel noise of noise_mode='random'
        for start, positions, count in rank_slices(num_gen, opts):
            c = c_all[start + positions]
            batch = (generate_images(opts, z_all[start + positions], c), c, count)
            if kept is not None:
                kept.append(batch)
            yield batch
    if kept is not None and opts.feature_memo is not None:
        opts.feature_memo[key] = kept


def compute_feature_stats_for_generator(
    opts: MetricOptions,
    detector: Detector,
    *,
    num_gen: int,
    class_index: int | None = None,
    capture_all: bool = False,
    capture_mean_cov: bool = False,
) -> FeatureStats:
    """Detector statistics of `num_gen` generated images (seeded z and labels; noise seeded per rank)."""
    if opts.feature_memo is not None:
        capture_all = capture_mean_cov = True
    # One generator per memo (an evaluation of one network), so the set is named by the draw and the detector.
    memo_key = json.dumps(
        dict(G=id(opts.G), detector=detector.key, num_gen=num_gen, class_index=class_index, seed=opts.seed),
        sort_keys=True,
        default=str,
    )
    if opts.feature_memo is not None and memo_key in opts.feature_memo:
        return opts.feature_memo[memo_key]
    stats = FeatureStats(capture_all=capture_all, capture_mean_cov=capture_mean_cov)
    with progress_bar(opts, num_gen, f"{detector.name} features of generated images") as bar:
        for images, _labels, count in generated_batches(opts, num_gen, class_index):
            with torch.no_grad():
                stats.append(gather_chunk(detector(images), count, opts))
            bar.update(count)
    return _remember(opts, memo_key, stats)


def compute_feature_stats_for_evaluated(
    opts: MetricOptions,
    detector: Detector,
    *,
    num_gen: int,
    class_index: int | None = None,
    capture_all: bool = False,
    capture_mean_cov: bool = False,
) -> FeatureStats:
    """Detector statistics of the set under evaluation: `num_gen` generated images, or with `opts.dataset2_kwargs`
    up to `num_gen` images of the second dataset (all of them when it has fewer; a seeded subset otherwise)."""
    captures = dict(class_index=class_index, capture_all=capture_all, capture_mean_cov=capture_mean_cov)
    if opts.dataset2_kwargs is not None:
        return compute_feature_stats_for_dataset(
            opts, detector, max_items=num_gen, dataset_kwargs=opts.dataset2_kwargs, **captures
        )
    return compute_feature_stats_for_generator(opts, detector, num_gen=num_gen, **captures)

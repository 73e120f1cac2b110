"""Training a spine classifier: study-level validation split, the paper's augmentation, best epoch by val AUC.

The best epoch is chosen on a validation split of the training data only (never on a test set, unlike the
original code), with early stopping after `patience` epochs without improvement. Runs are seeded and, on CPU,
bit-reproducible.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import math
import platform
import sys

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from tqdm import tqdm

import dnnlib
from spine.classifier.artifact import INPUT_NORMS, ClassifierSpec, normalize_pixels, to_classifier_pixels
from spine.classifier.data import LabelledImages, predict_probabilities
from spine.classifier.models import build_network, training_memory_format
from spine.data.splits import split_by_study
from spine.scoring import roc_auc, youden_point


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """Classifier training settings; defaults follow the paper (Adam 1e-3, batch 32, flip/rotate/crop)."""

    arch: str = "small_cnn"
    arch_kwargs: dict = dataclasses.field(default_factory=dict)
    resolution: int = 64
    epochs: int = 30
    patience: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    val_fraction: float = 0.2
    seed: int = 0
    init_weights: str | None = None
    device: str = "cpu"
    flip_prob: float = 0.3  # the paper's RandomHorizontalFlip(0.3)
    max_rotate_deg: float = 5.0
    crop_scale: tuple[float, float] = (0.8, 1.0)  # RandomResizedCrop area range, aspect ratio 1
    input_norm: str = "dataset"  # spine.classifier.artifact.INPUT_NORMS


@dataclasses.dataclass
class TrainResult:
    net: nn.Module  # at its best epoch, eval mode
    spec: ClassifierSpec
    provenance: dict


def augment_batch(
    pixels: torch.Tensor,
    generator: torch.Generator,
    flip_prob: float,
    max_rotate_deg: float,
    crop_scale: tuple[float, float],
) -> torch.Tensor:
    """Random horizontal flip, rotation and square resized crop, as one affine resampling per image.

    Out-of-image areas are black (pixel 0), as with torchvision's transforms applied before normalization.
    """
    n = pixels.shape[0]
    u = torch.rand(n, 5, generator=generator, dtype=torch.float64)
    flip = torch.where(u[:, 0] < flip_prob, -1.0, 1.0)
    angle = (u[:, 1] * 2 - 1) * math.radians(max_rotate_deg)
    side = torch.sqrt(crop_scale[0] + u[:, 2] * (crop_scale[1] - crop_scale[0]))  # crop side / image side
    # Crop centre: the outermost output pixel centres stay within the input's pixel centres, so bilinear
    # sampling never blends in the zero padding (only rotation brings in black corners).
    inner = torch.tensor([1 - 1 / pixels.shape[3], 1 - 1 / pixels.shape[2]], dtype=torch.float64)
    shift = (u[:, 3:5] * 2 - 1) * (1 - side[:, None]) * inner
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Output coordinate p -> crop p*side + shift -> rotate -> mirror x: the sampling location in the input.
    theta = (
        torch.stack(
            [
                torch.stack([flip * cos * side, -flip * sin * side, flip * (cos * shift[:, 0] - sin * shift[:, 1])], 1),
                torch.stack([sin * side, cos * side, sin * shift[:, 0] + cos * shift[:, 1]], 1),
            ],
            1,
        )
        .to(pixels.dtype)
        .to(pixels.device)
    )
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
    return F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _intensity_stats(images: torch.Tensor, spec_without_intensity: ClassifierSpec, batch_size: int = 256) -> dict:
    """Per-channel mean and std of the training pixels scaled to [0, 1], as the network-input normalization."""
    total = total_sq = count = 0
    for start in range(0, len(images), batch_size):
        x = to_classifier_pixels(images[start : start + batch_size].to(torch.float64), spec_without_intensity) / 255
        total = total + x.sum(dim=(0, 2, 3))
        total_sq = total_sq + (x * x).sum(dim=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = torch.sqrt((total_sq / count - mean * mean).clamp(min=1e-12)).clamp(min=1e-3)
    return dict(scale=1 / 255, mean=mean.tolist(), std=std.tolist())


def _loss_function(labels: torch.Tensor, num_classes: int, binary: bool) -> nn.Module:
    """Class-weighted loss: pos_weight n_neg/n_pos (binary), balanced weights n/(K n_k) (multi-class)."""
    counts = torch.bincount(labels, minlength=num_classes).to(torch.float32)
    if binary:
        return nn.BCEWithLogitsLoss(pos_weight=(counts[0] / counts[1].clamp(min=1)).reshape(1))
    weights = torch.where(counts > 0, counts.sum() / (num_classes * counts.clamp(min=1)), torch.zeros(()))
    return nn.CrossEntropyLoss(weight=weights)


def validation_auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """Binary AUC, or the macro one-vs-rest AUC over classes with both positives and negatives."""
    if probs.ndim == 1:
        return roc_auc(labels, probs)
    aucs = [roc_auc(labels == k, probs[:, k]) for k in range(probs.shape[1]) if 0 < (labels == k).sum() < len(labels)]
    return float(np.mean(aucs))


def validation_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean cross-entropy of validation probabilities (binary: of the abnormal probability; multi-class: of the
    true class), unweighted, with probabilities clipped to [1e-7, 1 - 1e-7]."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1 - 1e-7)
    labels = np.asarray(labels).astype(np.int64)
    if p.ndim == 1:
        return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))
    return float(-np.mean(np.log(p[np.arange(len(labels)), labels])))


def improves(val_auc: float, val_loss: float, best_auc: float, best_loss: float) -> bool:
    """Model selection: a higher validation AUC wins; an equal one wins with a lower validation loss. Without the
    tie-break, data whose validation AUC saturates at 1.0 in the first epoch (synthetic images whose classes differ
    plainly) would keep a one-epoch model however much the later epochs learn."""
    return val_auc > best_auc or (val_auc == best_auc and val_loss < best_loss)


def validation_thresholds(labels: np.ndarray, probs: np.ndarray) -> tuple[float, ...]:
    """Youden thresholds on validation probabilities (0.5 / 1/K where a class is absent from validation)."""
    if probs.ndim == 1:
        return (youden_point(labels, probs)["threshold"],)
    k_classes = probs.shape[1]
    return tuple(
        youden_point(labels == k, probs[:, k])["threshold"] if 0 < (labels == k).sum() < len(labels) else 1 / k_classes
        for k in range(k_classes)
    )


def _check_validation_split(labels: torch.Tensor, train_idx: list[int], val_idx: list[int], binary: bool) -> None:
    val_classes = set(labels[val_idx].tolist())
    if not train_idx or len(val_classes) < 2 or (binary and set(labels[train_idx].tolist()) != {0, 1}):
        raise dnnlib.UserError(
            f"the study-level split gave {len(train_idx)} training and {len(val_idx)} validation "
            f"images with validation classes {sorted(val_classes)}; validation AUC needs two classes "
            f"on each side: use more data or a different --val-fraction"
        )


def _train_epoch(
    net: nn.Module,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: LabelledImages,
    train_idx: torch.Tensor,
    spec: ClassifierSpec,
    options: TrainOptions,
    generator: torch.Generator,
) -> float:
    net.train()
    device = torch.device(options.device)
    order = train_idx[torch.randperm(len(train_idx), generator=generator)]
    total, count = 0.0, 0
    for start in range(0, len(order), options.batch_size):
        idx = order[start : start + options.batch_size]
        if len(idx) < 2:  # batch norm cannot train on a single image
            continue
        pixels = to_classifier_pixels(data.images[idx].to(device, torch.float32), spec)
        pixels = augment_batch(pixels, generator, options.flip_prob, options.max_rotate_deg, options.crop_scale)
        logits = net(normalize_pixels(pixels, spec))
        labels = data.labels[idx].to(device)
        loss = loss_fn(logits[:, 0], labels.float()) if spec.num_outputs == 1 else loss_fn(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(idx)
        count += len(idx)
    return total / max(count, 1)


def train_classifier(data: LabelledImages, options: TrainOptions) -> TrainResult:
    """Train on `data` with a study-level validation split; return the network at its best validation AUC."""
    if options.input_norm not in INPUT_NORMS:
        raise ValueError(f"input_norm must be one of {INPUT_NORMS}, got {options.input_norm!r}")
    binary = data.label_mode == "abnormality"
    labels = data.labels
    train_idx, val_idx = split_by_study(data.study_ids, labels.tolist(), options.val_fraction, options.seed)
    _check_validation_split(labels, train_idx, val_idx, binary)
    spec = ClassifierSpec(
        arch=options.arch,
        arch_kwargs=dict(options.arch_kwargs),
        label_mode=data.label_mode,
        class_names=tuple(data.class_names),
        resolution=options.resolution,
        channels=int(data.images.shape[1]),
        intensity={},
        thresholds=(),
        input_norm=options.input_norm,
    )
    spec = dataclasses.replace(spec, intensity=_intensity_stats(data.images[train_idx], spec))
    val_labels = labels[val_idx].numpy()
    device = torch.device(options.device)

    with torch.random.fork_rng(devices=[]):  # seed dropout etc. without disturbing the caller's RNG
        torch.manual_seed(options.seed)
        generator = torch.Generator().manual_seed(options.seed)
        net = build_network(spec.arch, spec.channels, spec.num_outputs, spec.arch_kwargs, options.init_weights)
        net = net.to(device, memory_format=training_memory_format(spec.arch))
        loss_fn = _loss_function(labels[train_idx], len(data.class_names), binary).to(device)
        optimizer = torch.optim.Adam(net.parameters(), lr=options.lr)
        history: list[dict] = []
        best = dict(epoch=-1, auc=-math.inf, loss=math.inf, state=None, thresholds=None)
        progress = tqdm(range(options.epochs), desc=f"training {options.arch}", unit="epoch")
        for epoch in progress:
            train_loss = _train_epoch(net, loss_fn, optimizer, data, torch.tensor(train_idx), spec, options, generator)
            net.eval()
            probs = predict_probabilities(net, spec, data.images[val_idx], options.batch_size).numpy()
            val_auc = validation_auc(val_labels, probs)
            val_loss = validation_loss(val_labels, probs)
            history.append(dict(epoch=epoch, train_loss=train_loss, val_auc=val_auc, val_loss=val_loss))
            if improves(val_auc, val_loss, best["auc"], best["loss"]):
                best = dict(
                    epoch=epoch,
                    auc=val_auc,
                    loss=val_loss,
                    state=copy.deepcopy(net.state_dict()),
                    thresholds=validation_thresholds(val_labels, probs),
                )
            progress.set_postfix(loss=f"{train_loss:.4f}", val_auc=f"{val_auc:.4f}", best=best["epoch"])
            if epoch - best["epoch"] >= options.patience:
                break
    net.load_state_dict(best["state"])
    net.eval()
    spec = dataclasses.replace(spec, thresholds=tuple(float(t) for t in best["thresholds"]))
    return TrainResult(net=net, spec=spec, provenance=_provenance(data, options, train_idx, val_idx, history, best))


def _provenance(
    data: LabelledImages,
    options: TrainOptions,
    train_idx: list[int],
    val_idx: list[int],
    history: list[dict],
    best: dict,
) -> dict:
    """Plain-data record of how the classifier was made (stored in classifier.pkl)."""
    opts = dataclasses.asdict(options)
    opts["crop_scale"] = list(opts["crop_scale"])
    return dict(
        dataset=data.source,
        dataset_sha256=data.sha256,
        num_train=len(train_idx),
        num_val=len(val_idx),
        options=opts,
        epochs_run=len(history),
        best_epoch=best["epoch"],
        best_val_auc=float(best["auc"]),
        history=history,
        selection="best validation AUC on a study-level split of the training data, ties broken "
        "by the lower validation loss",
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        versions=dict(
            python=platform.python_version(),
            torch=str(torch.__version__),
            torchvision=str(torchvision.__version__),
            numpy=np.__version__,
            platform=sys.platform,
        ),
    )

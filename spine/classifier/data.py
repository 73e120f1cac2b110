"""A labelled dataset held in memory for classifier training and evaluation, and batched prediction.

Classifier datasets are small (a few thousand images), so they are read once into one uint8 tensor; training
then slices batches without a DataLoader, which keeps runs deterministic and fast on CPU.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import torch
from tqdm import tqdm

import dnnlib
from spine.classifier.artifact import ClassifierSpec, logits_to_probabilities, uint8_to_input
from training.dataset import ImageFolderDataset

_DEFAULT_CLASS_NAMES = {"abnormality": ("normal", "abnormal")}


@dataclasses.dataclass(frozen=True)
class LabelledImages:
    """uint8 images [N, C, H, W], integer class labels [N], study ids, and what the labels mean."""

    images: torch.Tensor
    labels: torch.Tensor
    study_ids: list[str | None]
    label_mode: str
    class_names: list[str]
    source: str
    sha256: str  # of the images and labels as loaded: identifies the data whatever the container

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])


def _label_meaning(dataset: ImageFolderDataset, path: str) -> tuple[str, list[str]]:
    """Label mode and class names from dataset.json; without the `spinegan` block, 2 classes mean abnormality."""
    meta = dataset.metadata
    mode = meta.get("label_mode") or ("abnormality" if dataset.label_dim == 2 else "lesion")
    if mode not in ("abnormality", "lesion"):
        raise dnnlib.UserError(
            f"{path}/dataset.json: label_mode {mode!r} is not a single-class task; the classifier "
            f"needs 'abnormality' or 'lesion'"
        )
    names = meta.get("class_names") or _DEFAULT_CLASS_NAMES.get(mode) or [str(k) for k in range(dataset.label_dim)]
    if len(names) != dataset.label_dim:
        raise dnnlib.UserError(
            f"{path}/dataset.json: {len(names)} class names but labels of dimension {dataset.label_dim}"
        )
    if mode == "abnormality" and len(names) != 2:
        raise dnnlib.UserError(f"{path}/dataset.json: label_mode 'abnormality' needs 2 classes, got {names}")
    return mode, list(names)


def load_labelled_images(path: str) -> LabelledImages:
    """Read every image and its class index from a dataset in the training format (folder or zip)."""
    dataset = ImageFolderDataset(path, use_labels=True)
    if not dataset.has_onehot_labels:
        raise dnnlib.UserError(f"{path}/dataset.json: the classifier needs integer class labels (one class per image)")
    label_mode, class_names = _label_meaning(dataset, path)
    images = np.empty([len(dataset), *dataset.image_shape], dtype=np.uint8)
    labels = np.empty(len(dataset), dtype=np.int64)
    for i in tqdm(range(len(dataset)), desc="loading images", unit="img", leave=False):
        images[i], onehot = dataset[i]
        labels[i] = int(np.argmax(onehot))
    digest = hashlib.sha256(images.tobytes())
    digest.update(labels.tobytes())
    return LabelledImages(
        images=torch.from_numpy(images),
        labels=torch.from_numpy(labels),
        study_ids=[dataset.image_info(i)["study_id"] for i in range(len(dataset))],
        label_mode=label_mode,
        class_names=class_names,
        source=str(path),
        sha256=digest.hexdigest(),
    )


@torch.no_grad()
def predict_probabilities(
    net: torch.nn.Module, spec: ClassifierSpec, images: torch.Tensor, batch_size: int = 64
) -> torch.Tensor:
    """Class probabilities for uint8 images, on CPU: [N] (abnormality) or [N, K] (lesion).

    `net` is a SpineClassifier or a bare network being trained (put it in eval mode first).
    """
    device = next(net.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        x = uint8_to_input(images[start : start + batch_size].to(device), spec)
        out.append(logits_to_probabilities(net(x)).cpu())
    return torch.cat(out)

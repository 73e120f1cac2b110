"""Per-class mean images of a labelled dataset and how the class difference of a generator's images matches the
real one (used by the experiment report and the occlusion diagnosis)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import dnnlib
from metrics.class_difference import class_difference, difference_agreement
from training.dataset import ImageFolderDataset


def save_figure(fig: Any, path: Path) -> str:
    """A matplotlib figure as a PNG (written atomically); returns the file name."""
    with dnnlib.atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", bbox_inches="tight")
    return path.name


def labelled_dataset(dataset_path: str) -> tuple[ImageFolderDataset, list[str], np.ndarray]:
    """A labelled dataset, its class names and its integer labels."""
    dataset = ImageFolderDataset(dataset_path, use_labels=True)
    names = dataset.metadata.get("class_names") or [str(k) for k in range(dataset.label_dim)]
    labels = np.array([int(np.argmax(dataset.get_label(i))) for i in range(len(dataset))])
    return dataset, list(names), labels


def class_means(dataset_path: str, max_images: int = 2000) -> dict[str, np.ndarray]:
    """Per-class mean image (float64, 0-255, [H, W], channels averaged) of the first `max_images` of each class."""
    dataset, names, labels = labelled_dataset(dataset_path)
    means = {}
    for k, name in enumerate(names):
        picks = np.flatnonzero(labels == k)[:max_images]
        if len(picks):
            means[name] = np.mean([dataset[int(i)][0].astype(np.float64).mean(axis=0) for i in picks], axis=0)
    return means


def difference_correlation(real: dict[str, np.ndarray], synthetic: dict[str, np.ndarray]) -> float | None:
    """Pearson r between the real and the synthetic per-pixel class difference (last class - first class):
    1 = the generator's classes differ where the real ones do. None when a class is missing."""
    if len(real) < 2 or set(real) != set(synthetic):
        return None
    names = list(real)
    return difference_agreement(
        class_difference(np.stack([real[n] for n in names])), class_difference(np.stack([synthetic[n] for n in names]))
    )[0]


def plot_class_means(real: dict[str, np.ndarray], synthetic: dict[str, np.ndarray], path: Path) -> str:
    """Rows real / synthetic; columns: each class's mean image, then the difference last - first class (a shared
    symmetric colour scale across both rows, so the strength of the class difference compares)."""
    from matplotlib.figure import Figure

    names = list(real)
    diffs = {kind: means[names[-1]] - means[names[0]] for kind, means in (("real", real), ("synthetic", synthetic))}
    span = max(float(np.abs(d).max()) for d in diffs.values()) or 1.0
    # Column titles once, over the top row, and the row's kind as the first image's y label: titles per image
    # ("synthetic: mean abnormal") were wider than the images and ran into each other.
    fig = Figure(figsize=(2.6 * (len(names) + 1), 5.2), dpi=90)
    for r, (kind, means) in enumerate((("real", real), ("synthetic", synthetic))):
        for c, name in enumerate(names):
            ax = fig.add_subplot(2, len(names) + 1, r * (len(names) + 1) + c + 1)
            ax.imshow(means[name], cmap="gray", vmin=0, vmax=255)
            ax.set(title=f"mean {name}" if r == 0 else "", xticks=[], yticks=[], ylabel=kind if c == 0 else "")
        ax = fig.add_subplot(2, len(names) + 1, r * (len(names) + 1) + len(names) + 1)
        image = ax.imshow(diffs[kind], cmap="RdBu_r", vmin=-span, vmax=span)
        ax.set(title=f"{names[-1]} - {names[0]}" if r == 0 else "", xticks=[], yticks=[])
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return save_figure(fig, path)

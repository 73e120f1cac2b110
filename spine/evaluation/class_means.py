"""Per-class mean images of a labelled dataset and how the class difference of a generator's images matches the
real one (used by the experiment report and the occlusion diagnosis).

Against a population reference (many fresh phantom images; the experiment's `class_reference`), three figures per
set of images: r and the RMS ratio of its class difference against the reference's, and the detail ratio of its
class means, which reads the spread of poses: the mean of real radiographs, taken at many positions and angles,
is a smooth blur, while a generator that draws few poses keeps sharp anatomy in its mean."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.ndimage

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


def _class_means_of(
    dataset: ImageFolderDataset, names: list[str], labels: np.ndarray, select: Callable[[np.ndarray], np.ndarray]
) -> dict[str, np.ndarray]:
    """Per-class mean image of the images `select` keeps of each class's indices (classes it empties are left out)."""
    means = {}
    for k, name in enumerate(names):
        picks = select(np.flatnonzero(labels == k))
        if len(picks):
            means[name] = np.mean([dataset[int(i)][0].astype(np.float64).mean(axis=0) for i in picks], axis=0)
    return means


def class_means(dataset_path: str, max_images: int | None = 2000) -> dict[str, np.ndarray]:
    """Per-class mean image (float64, 0-255, [H, W], channels averaged) of the first `max_images` of each class
    (None: all)."""
    dataset, names, labels = labelled_dataset(dataset_path)
    return _class_means_of(dataset, names, labels, lambda picks: picks[:max_images])


def half_class_means(
    dataset_path: str,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, tuple[int, int]]]:
    """class_means of two disjoint halves (each class's even- and odd-numbered images) and {class: (images in the
    first half, in the second)}, every class in the dataset's order."""
    dataset, names, labels = labelled_dataset(dataset_path)
    halves = [_class_means_of(dataset, names, labels, lambda picks, h=h: picks[h::2]) for h in (0, 1)]
    counts = {
        name: ((n + 1) // 2, n // 2) for name, n in ((name, int(np.sum(labels == k))) for k, name in enumerate(names))
    }
    return halves[0], halves[1], counts


def joined_means(
    first: dict[str, np.ndarray], second: dict[str, np.ndarray], counts: dict[str, tuple[int, int]]
) -> dict[str, np.ndarray]:
    """The whole dataset's class means from its halves' (half_class_means), weighted by their counts."""
    return {
        name: (n1 * first[name] + (n2 * second[name] if n2 else 0.0)) / (n1 + n2)
        for name, (n1, n2) in counts.items()
        if n1
    }


def difference_correlation(real: dict[str, np.ndarray], synthetic: dict[str, np.ndarray]) -> float | None:
    """Pearson r between the real and the synthetic per-pixel class difference (last class - first class):
    1 = the generator's classes differ where the real ones do. None when a class is missing."""
    return reference_agreement(real, synthetic)["r"]


# The scale that separates a mean image's anatomy from its blur: 2 pixels at 32x32 (a vertebral body is 5-8 wide).
DETAIL_SIGMA = 2.0


def mean_detail(mean: np.ndarray, sigma: float = DETAIL_SIGMA) -> float:
    """RMS of a mean image's detail: the image minus its Gaussian blur (sd `sigma` pixels, edges repeated)."""
    mean = np.asarray(mean, np.float64)
    return float(np.sqrt(np.mean((mean - scipy.ndimage.gaussian_filter(mean, sigma, mode="nearest")) ** 2)))


def reference_agreement(reference: dict[str, np.ndarray], means: dict[str, np.ndarray]) -> dict[str, float | None]:
    """A set's class means against the reference's: r and RMS ratio of the class difference (last class - first),
    and the detail ratio, the mean over classes of mean_detail(set) / mean_detail(reference) (1: poses as spread as
    the reference's; sampling noise adds detail, so a small set reads a little above 1 even when drawn as the
    reference is). None for figures a missing class leaves undefined."""
    if len(reference) < 2 or set(reference) != set(means):
        return dict(r=None, rms_ratio=None, detail_ratio=None)
    names = list(reference)
    r, ratio = difference_agreement(
        class_difference(np.stack([reference[n] for n in names])), class_difference(np.stack([means[n] for n in names]))
    )
    details = [mean_detail(means[n]) / mean_detail(reference[n]) for n in names if mean_detail(reference[n]) > 0]
    return dict(r=r, rms_ratio=ratio, detail_ratio=float(np.mean(details)) if details else None)


REFERENCE = "reference"  # the reference's key among saved means (sets are named by what they are, never this)
# The reference's own sampling noise, as one of reference_figures' rows: one half of it read against the other. Every
# r is read against a reference of finite size, so even a set drawn without noise from the population reads below 1
# (reference_ceiling; RESULTS AL1: two 5,000-image references agree at r 0.78-0.90).
REFERENCE_HALVES = "reference, one half against the other"


def reference_ceiling(halves_r: float | None) -> float | None:
    """The r a noise-free class difference would read against the whole reference, from its halves' r: the reference
    correlates with the population's difference at sqrt(reliability), the whole reference's reliability being
    2h / (1 + h) from its halves' h (Spearman-Brown). None where h is undefined or not positive."""
    if halves_r is None or halves_r <= 0:
        return None
    return float(np.sqrt(2 * halves_r / (1 + halves_r)))


_KEY_SEPARATOR = "//"


def save_means(path: Path, means: dict[str, dict[str, np.ndarray]]) -> None:
    """{set: {class: mean image}} as one .npz (written atomically), so a report reads what a step computed."""
    arrays = {
        f"{name}{_KEY_SEPARATOR}{cls}": image for name, per_class in means.items() for cls, image in per_class.items()
    }
    with dnnlib.atomic_write(path, "wb") as f:
        np.savez(f, **arrays)


def load_means(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """save_means's {set: {class: mean image}}, classes in their saved order."""
    means: dict[str, dict[str, np.ndarray]] = {}
    with np.load(path) as arrays:
        for key in arrays.files:
            name, cls = key.rsplit(_KEY_SEPARATOR, 1)
            means.setdefault(name, {})[cls] = arrays[key]
    return means


def reference_figures(
    reference_path: str, sets: dict[str, str], means_path: Path | None = None
) -> dict[str, dict[str, Any]]:
    """{set name: its image count and reference_agreement} of every labelled dataset in `sets` against the
    reference's class means, each set's means over all of its images, and under REFERENCE_HALVES the reference's
    first half against its second; with `means_path`, every set's class means (the reference's under REFERENCE) are
    also saved there (save_means)."""
    first, second, counts = half_class_means(reference_path)  # one pass: the whole reference's means are the halves'
    reference = joined_means(first, second, counts)
    means = {name: class_means(path, None) for name, path in sets.items()}
    if means_path is not None:
        save_means(means_path, {REFERENCE: reference, **means})
    figures = {
        name: dict(images=len(ImageFolderDataset(path, use_labels=True)), **reference_agreement(reference, means[name]))
        for name, path in sets.items()
    }
    first_size = sum(n1 for n1, _ in counts.values())
    figures[REFERENCE_HALVES] = dict(images=first_size, **reference_agreement(first, second))
    return figures


def markdown_table(figures: dict[str, dict[str, Any]]) -> str:
    """reference_figures as a Markdown table."""

    def cell(value: float | None) -> str:
        return "undefined" if value is None else f"{value:.2f}"

    lines = [
        "| images | count | class difference r | RMS ratio | class-mean detail ratio |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, row in figures.items():
        lines.append(
            f"| {name} | {row['images']} | {cell(row['r'])} | {cell(row['rms_ratio'])} | {cell(row['detail_ratio'])} |"
        )
    return "\n".join(lines) + "\n"


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

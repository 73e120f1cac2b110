"""The class-mean difference: do the evaluated images' classes differ where, and as strongly as, the real ones do?

Each class's mean image (grey levels 0-255, channels averaged), then the difference image last class minus first
class (for abnormality labels: abnormal minus normal). Two figures compare the evaluated set's difference image with
the real one: Pearson r over pixels (1: the classes differ at the same places; blind to a uniform offset, since r
centres both images) and the magnitude ratio, RMS of the evaluated difference over RMS of the real one, offset
included (1: as strongly; a generator that draws its classes apart with an image-wide pattern reads far above 1).
The real side is every image of the dataset; the evaluated side is N generated images with labels drawn as the
dataset's (as FID draws them), or N images of a second dataset. The mean of N images carries noise of about
1/sqrt(N) of the pixels' spread, so r and the ratio of two real samples at the same N (the real-vs-real baseline)
are the scale to read them against.
"""

from __future__ import annotations

import numpy as np

from metrics.metric_utils import MetricOptions, generated_batches, select_real_indices
from training.dataset import construct_dataset


def class_difference(means: np.ndarray) -> np.ndarray:
    """Last class's mean minus the first's, [H, W] float64, from per-class means [C, H, W]."""
    return np.asarray(means[-1], np.float64) - np.asarray(means[0], np.float64)


def difference_agreement(real: np.ndarray, evaluated: np.ndarray) -> tuple[float | None, float | None]:
    """(Pearson r, RMS ratio evaluated / real) of two difference images; None where a side is constant or zero."""
    a, b = np.ravel(real).astype(np.float64), np.ravel(evaluated).astype(np.float64)
    r = None if a.std() == 0 or b.std() == 0 else float(np.corrcoef(a, b)[0, 1])
    rms_real = float(np.sqrt(np.mean(a**2)))
    ratio = None if rms_real == 0 else float(np.sqrt(np.mean(b**2)) / rms_real)
    return r, ratio


class ClassMeans:
    """Running per-class sums of grey images."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.sums: np.ndarray | None = None
        self.counts = np.zeros(num_classes, np.int64)

    def add(self, images: np.ndarray, labels: np.ndarray) -> None:
        """uint8 images [N, C, H, W] and their class indices [N]."""
        grey = np.asarray(images, np.float64).mean(axis=1)
        if self.sums is None:
            self.sums = np.zeros((self.num_classes, *grey.shape[1:]))
        np.add.at(self.sums, np.asarray(labels), grey)
        self.counts += np.bincount(labels, minlength=self.num_classes)

    def means(self, what: str) -> np.ndarray:
        if self.sums is None or (self.counts == 0).any():
            raise ValueError(
                f"class_diff: {what} has no image of class(es) {np.flatnonzero(self.counts == 0).tolist()}"
            )
        return self.sums / self.counts[:, None, None]


def dataset_class_means(dataset_kwargs: dict, max_items: int | None, seed: int) -> np.ndarray:
    """Per-class means [C, H, W] of a labelled dataset (all images, or a seeded subset of `max_items`)."""
    dataset = construct_dataset(dict(dataset_kwargs, use_labels=True, xflip=False))
    if not dataset.has_onehot_labels or dataset.label_dim < 2:
        raise ValueError(f"class_diff: {dataset_kwargs['path']} needs integer class labels of two or more classes")
    means = ClassMeans(dataset.label_dim)
    indices = select_real_indices(dataset, max_items, None, seed)
    for start in range(0, indices.size, 256):
        items = [dataset[int(i)] for i in indices[start : start + 256]]
        means.add(np.stack([image for image, _ in items]), np.array([int(np.argmax(label)) for _, label in items]))
    return means.means(dataset_kwargs["path"])


def compute_class_difference(opts: MetricOptions, num_gen: int) -> tuple[float | None, float | None]:
    """(r, RMS ratio) of `num_gen` evaluated images' class difference against every real image's."""
    if opts.num_gpus > 1:
        raise ValueError("class_diff runs in one process (its per-class sums are not gathered across GPUs)")
    real = dataset_class_means(opts.dataset_kwargs, None, opts.seed)
    if opts.dataset2_kwargs is not None:
        evaluated = dataset_class_means(opts.dataset2_kwargs, num_gen, opts.seed)
    else:
        if opts.G is None or opts.G.c_dim != real.shape[0]:
            raise ValueError(f"class_diff: needs a conditional generator with {real.shape[0]} classes")
        means = ClassMeans(real.shape[0])
        for images, labels, count in generated_batches(opts, num_gen):
            means.add(images[:count].cpu().numpy(), labels[:count].argmax(dim=1).numpy())
        evaluated = means.means("the generated images")
    return difference_agreement(class_difference(real), class_difference(evaluated))

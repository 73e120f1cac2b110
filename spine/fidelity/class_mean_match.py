"""Class-mean matching: each generated class's mean image, seen through a Gaussian blur, pulled to the real class's.

A conditional GAN matches the class means only through D, and at laptop scale it misses them: on validation draw 43
the demo generator's class difference (mean abnormal image - mean normal image) correlates with that of 5,000 fresh
phantom images at r 0.51-0.55 whether 1,000 or 10,000 images per class are drawn, while two halves of its own
10,000-per-class draw agree at r 0.97: a bias of G, not sampling noise (docs/RESULTS.md AH). This term asks for the
class means explicitly. Both sides are blurred (Gaussian, sd `sigma` pixels) because the real class means come from
the training images, whose pixel-scale class difference is mostly sampling noise: blurred by sd 1-2 pixels the
training images' class difference correlates better with the population's (0.76 and 0.81 on draws 43 and 44,
against 0.72 and 0.76 unblurred).

For an image i of class c, blurred b_i, with r_c the real class's blurred mean image and s the standard deviation of
the real images' blurred pixels:

    loss_i = weight * mean_pixels[(m_{c,-i} - r_c) * (b_i - r_c)] / s^2

where m_{c,-i} is the blurred mean of the batch's other class-c images, detached: the leave-one-out form of
`spine.clinical.feature_match`, whose gradient is an unbiased estimate of that of weight * |mu_c - r_c|^2 / pixels
(mu_c the generated class's blurred mean) and, unlike the squared error of a batch mean, does not also reward a
narrower spread. The real means are a statistic of the training images, so the term is refused under --dp=1.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from training.loss import class_indices, leave_one_out_match
from training.plugins import Plugin

TRUNCATE = 4.0  # the kernel reaches this many sds, as scipy.ndimage.gaussian_filter's default


def blur_matrix(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[size, size] matrix B with B @ x = the Gaussian blur (sd `sigma`) of a length-`size` signal x, edges repeated:
    row i holds the kernel's weights at the clamped positions i + offset."""
    radius = int(TRUNCATE * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    positions = (torch.arange(size, device=device).unsqueeze(1) + offsets.long().unsqueeze(0)).clamp(0, size - 1)
    return torch.zeros(size, size, dtype=dtype, device=device).scatter_add_(1, positions, kernel.expand(size, -1))


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [N, C, H, W] images (sd `sigma` pixels, edges repeated), as
    scipy.ndimage.gaussian_filter(mode="nearest") per image and channel; sigma 0 returns the images. Two small
    matrix products (B_H @ image @ B_W^T): on CPU several times faster than a grouped convolution, backward included."""
    if sigma == 0:
        return images
    height, width = images.shape[-2:]
    rows = blur_matrix(height, sigma, images.dtype, images.device)
    columns = rows if width == height else blur_matrix(width, sigma, images.dtype, images.device)
    return rows @ images @ columns.T


@dataclasses.dataclass(frozen=True)
class RealClassMeans:
    """The real images' blurred class means [C, channels, H, W] in G's pixel range [-1, 1], the blurred pixels'
    standard deviation s, the blur's sd and each class's image count."""

    means: torch.Tensor
    std: float
    sigma: float
    counts: tuple[int, ...]

    @staticmethod
    @torch.no_grad()
    def from_images(
        images: torch.Tensor, labels: torch.Tensor, num_classes: int, sigma: float, mirror: bool = False
    ) -> RealClassMeans:
        """From uint8 images [N, C, H, W] and integer labels [N]; every class needs an image. `mirror`: the
        training loop also shows the images flipped left-right (--mirror=1), so the means are of both."""
        counts = torch.bincount(labels.cpu(), minlength=num_classes)
        if len(counts) != num_classes or int(counts.min()) == 0:
            raise ValueError(
                f"class-mean matching needs real images of all {num_classes} classes; the labels have counts "
                f"{counts.tolist()}"
            )
        pixels = gaussian_blur(images.to(torch.float64) / 127.5 - 1, sigma)
        means = torch.stack([pixels[labels == c].mean(0) for c in range(num_classes)])
        if mirror:
            means = (means + means.flip(-1)) / 2
        return RealClassMeans(means.float(), float(pixels.std()), float(sigma), tuple(int(n) for n in counts))


class ClassMeanMatch(Plugin):
    """Generator term (see training.loss): the per-sample loss of the module docstring, times `weight`."""

    name = "class_mean_match"

    def __init__(self, real: RealClassMeans, weight: float, start_kimg: float = 0.0):
        if not (weight > 0 and math.isfinite(weight)):
            raise ValueError(f"class-mean matching: expected a positive weight, got {weight}")
        if not (start_kimg >= 0 and math.isfinite(start_kimg)):
            raise ValueError(f"class-mean matching: expected a start >= 0 kimg, got {start_kimg}")
        self.real = real
        self.weight = float(weight)
        self.start_kimg = float(start_kimg)
        self.images_seen = 0  # generated images this term was called on: the run's progress, kept in checkpoints

    def __call__(self, gen_img: torch.Tensor, gen_c: torch.Tensor) -> torch.Tensor:
        num_classes = self.real.means.shape[0]
        classes = class_indices(gen_c, gen_img.shape[0], num_classes, "class-mean matching")
        self.images_seen += gen_img.shape[0]
        if self.images_seen <= self.start_kimg * 1000:
            return gen_img.new_zeros(gen_img.shape[0])
        means = self.real.means.to(gen_img.device)
        if gen_img.shape[1:] != means.shape[1:]:
            raise ValueError(
                f"class-mean matching: generated images of shape {tuple(gen_img.shape[1:])}, the real class means "
                f"{tuple(means.shape[1:])}"
            )
        blurred = gaussian_blur(gen_img.float(), self.real.sigma)
        deviation = (blurred - means[classes]).flatten(1) / self.real.std
        return leave_one_out_match(deviation, classes, num_classes) * self.weight

    def state_dict(self) -> dict:
        return dict(images_seen=self.images_seen)

    def load_state_dict(self, state: dict | None) -> None:
        """Continue counting from the checkpoint's progress; a checkpoint of a run without this term (None) starts
        the count at 0, as a transfer from a snapshot does."""
        self.images_seen = 0 if state is None else int(state["images_seen"])

    def snapshot_metadata(self) -> dict[str, Any]:
        settings = dict(weight=self.weight, sigma=self.real.sigma, start_kimg=self.start_kimg)
        return dict(class_mean_match=dict(settings, real_counts=list(self.real.counts)))

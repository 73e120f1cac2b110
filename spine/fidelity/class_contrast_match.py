"""Class-contrast matching: where and how much the generated classes differ, seen through a Gaussian blur, pulled
to the real classes' difference, with G's class means tracked over its recent images.

Class-mean matching (`class_mean_match`, the demo's weight 10) holds each class's mean image; on the unopened demo
draws 33-35 its class difference still correlated with the population's at only r 0.48-0.65 (docs/RESULTS.md AI4).
Two reasons, both measured in the numbers: the class difference is a few grey levels RMS against a blurred pixel sd
near 60, so in a loss normalised by the pixel variance it weighs about 1/150 of what the classes share; and a batch
of 16 (about 8 images a class) estimates a class mean with a noise several times the difference's size. This term
therefore compares the contrasts only, normalised by the real contrasts' energy, and estimates G's class means from
an exponentially weighted average of its last images (about `MEMORY` of them, detached), not from the batch.

With b the blurred images, mu_c G's tracked blurred mean of class c, r_c the real one, the contrasts
d_c = mu_c - mean_k mu_k and d^r_c = r_c - mean_k r_k, e_c = d_c - d^r_c and Q = sum_c |d^r_c|^2:

    L = weight * sum_c |e_c|^2 / Q        (0 when G's class differences are the real ones, weight when G draws none)

and since sum_c e_c = 0, dL/dmu_c = 2 weight e_c / Q. Image i of class c (n_c of them in a batch of N) gets

    loss_i = L + weight * 2 (N / n_c) <e_c, b_i - detach(b_i)> / Q

whose value is L and whose batch mean has the gradient of L with the batch's class means standing in for mu_c. The
tracked means take the batch's images after the loss is formed, so no image enters its own direction. The real means
are a statistic of the training images, so the term is refused under --dp=1.

Measured on validation draws 43 and 44 (docs/RESULTS.md AJ): at weight 0.3 the tracked contrast agrees with the
training images' at r 0.97, but G's raw weights at the last step only at about 0.5: pushed along an error that
lags it by about `memory` images, G swings around the target (G_ema, its average, 0.83-0.94). It lifted r on one
draw and lowered it on the other; no mode uses it.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from spine.fidelity.class_mean_match import RealClassMeans, gaussian_blur
from training.loss import class_indices
from training.plugins import Plugin

MEMORY = 2000  # images: G's class means average its last ~2,000 (1,000 a class; 2 kimg of the demo's 70)
MIN_TRACKED = 100  # images of every class G's means must hold before the term acts (its first ~200 images)


class ClassContrastMatch(Plugin):
    """Generator term (see training.loss): the per-sample loss of the module docstring."""

    name = "class_contrast_match"

    def __init__(self, real: RealClassMeans, weight: float, memory: float = MEMORY):
        if not (weight > 0 and math.isfinite(weight)):
            raise ValueError(f"class-contrast matching: expected a positive weight, got {weight}")
        if not (memory > 0 and math.isfinite(memory)):
            raise ValueError(f"class-contrast matching: expected a memory > 0 images, got {memory}")
        self.real_contrast = real.means.double() - real.means.double().mean(0)
        self.energy = float(self.real_contrast.square().sum())
        if self.energy == 0:
            raise ValueError("class-contrast matching: the real class means are all equal (no class difference)")
        self.real = real
        self.weight = float(weight)
        self.memory = float(memory)
        self.decay = math.exp(-1 / memory)  # per image
        self.sums = torch.zeros_like(self.real_contrast)  # decayed sums of G's blurred images, per class
        self.counts = torch.zeros(real.means.shape[0], dtype=torch.float64)  # their decayed image counts

    def __call__(self, gen_img: torch.Tensor, gen_c: torch.Tensor) -> torch.Tensor:
        num_classes = self.real_contrast.shape[0]
        classes = class_indices(gen_c, gen_img.shape[0], num_classes, "class-contrast matching")
        if gen_img.shape[1:] != self.real_contrast.shape[1:]:
            raise ValueError(
                f"class-contrast matching: generated images of shape {tuple(gen_img.shape[1:])}, the real class "
                f"means {tuple(self.real_contrast.shape[1:])}"
            )
        blurred = gaussian_blur(gen_img.float(), self.real.sigma)
        loss = self._loss(blurred, classes)
        self._track(blurred.detach(), classes)
        return loss

    def _loss(self, blurred: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        if float(self.counts.min()) < MIN_TRACKED:
            return blurred.new_zeros(blurred.shape[0])
        means = self.sums / self.counts.view(-1, 1, 1, 1)
        error = (means - means.mean(0) - self.real_contrast) / self.energy  # e_c / Q
        value = self.weight * float(error.square().sum() * self.energy)
        share = blurred.shape[0] / torch.bincount(classes, minlength=len(self.counts)).to(blurred.dtype)
        direction = error.to(blurred)[classes] * share[classes].view(-1, 1, 1, 1)
        moved = ((blurred - blurred.detach()) * direction).flatten(1).sum(1)
        return value + 2 * self.weight * moved

    @torch.no_grad()
    def _track(self, blurred: torch.Tensor, classes: torch.Tensor) -> None:
        keep = self.decay ** blurred.shape[0]
        onehot = torch.nn.functional.one_hot(classes.cpu(), len(self.counts)).double()
        self.sums = self.sums * keep + torch.einsum("nc,nd->cd", onehot, blurred.cpu().double().flatten(1)).view_as(
            self.sums
        )
        self.counts = self.counts * keep + onehot.sum(0)

    def state_dict(self) -> dict:
        return dict(sums=self.sums.clone(), counts=self.counts.clone())

    def load_state_dict(self, state: dict | None) -> None:
        """Continue from the checkpoint's tracked means; a checkpoint of a run without this term (None) starts them
        afresh, as a transfer from a snapshot does."""
        if state is None:
            self.sums, self.counts = torch.zeros_like(self.sums), torch.zeros_like(self.counts)
            return
        if state["sums"].shape != self.sums.shape:
            raise ValueError(
                f"class-contrast matching: the checkpoint tracked means of shape {tuple(state['sums'].shape)}, "
                f"this run's are {tuple(self.sums.shape)}"
            )
        self.sums, self.counts = state["sums"].double().clone(), state["counts"].double().clone()

    def snapshot_metadata(self) -> dict[str, Any]:
        settings = dict(weight=self.weight, sigma=self.real.sigma, memory=self.memory)
        return dict(class_contrast_match=dict(settings, real_counts=list(self.real.counts)))

"""Class feature matching: the judge's features of each generated class pulled to the real class's mean.

The paper's clinical loss (`spine.clinical.loss`) rewards a generated image for being *more* clearly its class to
the judge, without limit. At laptop scale that overshoots: the generators of docs/RESULTS.md E3 make their classes
far easier to tell apart than the real ones (synthetic validation AUC 1.0 against 0.91 on real images), by a
whole-image darkening and banding the judge rewards and no lesion explains. This term asks instead that, seen by
the same frozen judge, each generated class look like the real class *on average*: an overshoot costs as much as
an undershoot.

For an image i of class c with judge features f_i (the input of the judge's last linear layer), whitened by the
real features' standard deviation s:

    loss_i = weight * mean_d [ (m_{c,-i} - r_c)_d * (f_i - r_c)_d / s_d^2 ]

where r_c is the real class-c mean feature and m_{c,-i} the mean of the *other* class-c images of the batch,
detached. Its gradient is an unbiased estimate of that of weight * |mu_c - r_c|^2 / D (mu_c the generated class
mean): the leave-one-out mean is independent of f_i, so unlike the squared error of a batch mean, the term does not
also penalise the spread of the features (which would reward mode collapse). An image whose class appears only
once in the batch gets no loss.

The real means come from the training images (`RealClassFeatures.from_images`), a statistic of the private data:
runs under --dp=1 refuse this term (spine.clinical.options).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from spine.classifier.artifact import SpineClassifier
from training.plugins import Plugin


def _last_linear(net: nn.Module) -> nn.Linear:
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"the judge ({type(net).__name__}) has no linear layer whose input could serve as features")
    return linears[-1]


def judge_features(classifier: SpineClassifier, x: torch.Tensor) -> torch.Tensor:
    """Features [N, D] of network input x: the input of the judge's last linear layer (differentiable in x)."""
    captured: list[torch.Tensor] = []
    hook = _last_linear(classifier.net).register_forward_pre_hook(lambda _m, inputs: captured.append(inputs[0]))
    try:
        classifier(x)
    finally:
        hook.remove()
    return captured[0].flatten(1)


def _batches(images: torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    for start in range(0, len(images), size):
        yield images[start : start + size]


@dataclasses.dataclass(frozen=True)
class RealClassFeatures:
    """Per-class mean judge features of the real images [C, D] and the features' standard deviation [D]."""

    means: torch.Tensor
    std: torch.Tensor
    counts: tuple[int, ...]

    @staticmethod
    @torch.no_grad()
    def from_images(
        classifier: SpineClassifier, images: torch.Tensor, labels: torch.Tensor, num_classes: int, batch_size: int = 256
    ) -> RealClassFeatures:
        """From uint8 images [N, C, H, W] and integer labels [N]; every class needs at least one image."""
        feats = torch.cat(
            [
                judge_features(classifier, classifier.preprocess_uint8(chunk)).double().cpu()
                for chunk in _batches(images, batch_size)
            ]
        )
        counts = torch.bincount(labels.cpu(), minlength=num_classes)
        if len(counts) != num_classes or int(counts.min()) == 0:
            raise ValueError(
                f"class feature matching needs real images of all {num_classes} classes; the labels "
                f"have counts {counts.tolist()}"
            )
        means = torch.stack([feats[labels.cpu() == c].mean(0) for c in range(num_classes)])
        std = feats.std(0)
        std = std + 1e-2 * std.mean() + 1e-12  # dead units (std 0) get a floor instead of a division by zero
        return RealClassFeatures(means.float(), std.float(), tuple(int(n) for n in counts))


class ClassFeatureMatch(Plugin):
    """Generator term (see training.loss): the per-sample loss of the module docstring, times `weight`."""

    name = "clinical_match"

    def __init__(self, classifier: SpineClassifier, real: RealClassFeatures, weight: float):
        if not weight > 0:
            raise ValueError(f"class feature matching: expected a positive weight, got {weight}")
        self.classifier = classifier
        self.real = real
        self.weight = float(weight)

    def __call__(self, gen_img: torch.Tensor, gen_c: torch.Tensor) -> torch.Tensor:
        num_classes = self.real.means.shape[0]
        if gen_c.ndim != 2 or gen_c.shape != (gen_img.shape[0], num_classes):
            raise ValueError(
                f"class feature matching: conditioning labels of shape {tuple(gen_c.shape)}; expected "
                f"[{gen_img.shape[0]}, {num_classes}] one-hot labels"
            )
        self.classifier.to(gen_img.device).requires_grad_(False).eval()
        feats = judge_features(self.classifier, self.classifier.preprocess_generated(gen_img))
        means, std = self.real.means.to(feats.device), self.real.std.to(feats.device)
        classes = gen_c.argmax(dim=1)
        deviation = (feats - means[classes]) / std  # whitened distance from the class mean
        onehot = torch.nn.functional.one_hot(classes, num_classes).to(deviation.dtype)
        class_sums = onehot.T @ deviation.detach()  # [C, D]
        others = (onehot.sum(0)[classes] - 1).unsqueeze(1)  # same-class images besides i
        leave_one_out = (class_sums[classes] - deviation.detach()) / others.clamp(min=1)
        return (leave_one_out * deviation).mean(1) * (others[:, 0] > 0) * self.weight

    def snapshot_metadata(self) -> dict[str, Any]:
        return dict(
            clinical_match=dict(
                weight=self.weight, real_counts=list(self.real.counts), feature_dim=int(self.real.means.shape[1])
            )
        )

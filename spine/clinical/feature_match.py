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

The real means come from the training images (`RealClassFeatures.from_images`), a statistic of the private data;
under --dp=1 they come instead from a DP release carried by the judge (`RealClassFeatures.from_release`, made by
`python -m spine.dp.judge --release-features=SIGMA`, its cost in the judge's account), with the run's --data
declared public (--dp-data-public=1) for the features' spread (spine.clinical.options).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from spine.classifier.artifact import SpineClassifier
from spine.classifier.features import clip_features, image_features, judge_features
from training.loss import class_indices, leave_one_out_match
from training.plugins import Plugin


@dataclasses.dataclass(frozen=True)
class RealClassFeatures:
    """Per-class mean judge features of the real images [C, D] and the features' standard deviation [D]. With `clip`
    (a DP release, `spine.dp.class_features`) the means are of features clipped to that L2 norm, and the generated
    images' features are clipped the same way before they are compared."""

    means: torch.Tensor
    std: torch.Tensor
    counts: tuple[int, ...]
    clip: float | None = None

    @staticmethod
    @torch.no_grad()
    def from_images(
        classifier: SpineClassifier, images: torch.Tensor, labels: torch.Tensor, num_classes: int, batch_size: int = 256
    ) -> RealClassFeatures:
        """From uint8 images [N, C, H, W] and integer labels [N]; every class needs at least one image."""
        feats = image_features(classifier, images, None, batch_size)
        counts = torch.bincount(labels.cpu(), minlength=num_classes)
        if len(counts) != num_classes or int(counts.min()) == 0:
            raise ValueError(
                f"class feature matching needs real images of all {num_classes} classes; the labels "
                f"have counts {counts.tolist()}"
            )
        means = torch.stack([feats[labels.cpu() == c].mean(0) for c in range(num_classes)])
        return RealClassFeatures(means.float(), _spread(feats), tuple(int(n) for n in counts))

    @staticmethod
    @torch.no_grad()
    def from_release(
        classifier: SpineClassifier, release: dict, images: torch.Tensor, batch_size: int = 256
    ) -> RealClassFeatures:
        """The class means of a DP release (the judge's provenance `class_features`); the spread from `images`,
        which must not be the private ones (train.py takes the run's public --data)."""
        means = torch.tensor(release["means"], dtype=torch.float32)
        feats = image_features(classifier, images, float(release["clip"]), batch_size)
        if feats.shape[1] != means.shape[1]:
            raise ValueError(
                f"the released class features have {means.shape[1]} dimensions; this judge's features {feats.shape[1]}"
            )
        counts = tuple(max(int(round(n)), 0) for n in release["counts"])
        return RealClassFeatures(means, _spread(feats), counts, clip=float(release["clip"]))


def _spread(feats: torch.Tensor) -> torch.Tensor:
    """Per-dimension standard deviation, with a floor for dead units (std 0) instead of a division by zero."""
    std = feats.std(0)
    return (std + 1e-2 * std.mean() + 1e-12).float()


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
        classes = class_indices(gen_c, gen_img.shape[0], num_classes, "class feature matching")
        self.classifier.to(gen_img.device).requires_grad_(False).eval()
        feats = judge_features(self.classifier, self.classifier.preprocess_generated(gen_img))
        if self.real.clip is not None:
            feats = clip_features(feats, self.real.clip)
        means, std = self.real.means.to(feats.device), self.real.std.to(feats.device)
        deviation = (feats - means[classes]) / std  # whitened distance from the class mean
        return leave_one_out_match(deviation, classes, num_classes) * self.weight

    def snapshot_metadata(self) -> dict[str, Any]:
        return dict(
            clinical_match=dict(
                weight=self.weight,
                real_counts=list(self.real.counts),
                feature_dim=int(self.real.means.shape[1]),
                released_clip=self.real.clip,
            )
        )

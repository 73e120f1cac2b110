"""A one-shot DP release of the private images' class-mean judge features, for class feature matching under DP.

DP-SGD on D adds fresh noise at every step, and at epsilon 10 that noise collapses the generator wherever it lands in
D's convolutions (docs/RESULTS.md R, V, W). A statistic released once costs one Gaussian mechanism, whatever the
training length: here each class's mean judge features (`spine.clinical.feature_match`), which the generator's
classes are then pulled to (train.py --clinical-match, with --dp-data-public=1). DP-MERF (Harder et al., AISTATS
2021) and DP-MEPF (Harder et al., TMLR 2023) train generators on such released mean embeddings.

The mechanism, one record (image) added or removed:
  * each image's features f_i are clipped to L2 norm C: g_i = f_i * min(1, C / |f_i|);
  * per class c, the sum S_c = sum of g_i and the count n_c; one image changes one class's (S_c, C * n_c) by a vector
    of norm at most sqrt(2) C;
  * N(0, (sigma sqrt(2) C)^2) is added to every coordinate of every class's (S_c, C * n_c), once: a Gaussian
    mechanism of noise multiplier sigma, sample rate 1, one step, composed into the judge's account;
  * the released mean of class c is S_c / max(n_c, 1) with the noised values (post-processing).
The generator's features are clipped the same way before they are matched, so the clipping biases neither side.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from spine.classifier.artifact import SpineClassifier
from spine.classifier.data import LabelledImages
from spine.classifier.features import image_features


def release_class_features(
    classifier: SpineClassifier,
    data: LabelledImages,
    clip: float,
    noise_multiplier: float,
    seed: int,
    batch_size: int = 256,
) -> dict[str, Any]:
    """The released class means [C][D] (lists), noised counts, and the mechanism's settings, for the provenance."""
    if not clip > 0 or not noise_multiplier > 0:
        raise ValueError(
            f"a DP feature release needs clip > 0 and sigma > 0, got clip {clip}, sigma {noise_multiplier}"
        )
    num_classes = len(data.class_names)
    feats = image_features(classifier, data.images, clip, batch_size)
    sums = torch.nn.functional.one_hot(data.labels.cpu(), num_classes).double().T @ feats
    counts = torch.bincount(data.labels.cpu(), minlength=num_classes).double()
    std = noise_multiplier * math.sqrt(2.0) * clip
    generator = torch.Generator().manual_seed(seed)
    noisy_sums = sums + std * torch.randn(sums.shape, generator=generator, dtype=torch.float64)
    noisy_counts = counts + std / clip * torch.randn(counts.shape, generator=generator, dtype=torch.float64)
    means = noisy_sums / noisy_counts.clamp(min=1.0).unsqueeze(1)
    return dict(
        means=means.tolist(),
        counts=noisy_counts.tolist(),
        clip=float(clip),
        noise_multiplier=float(noise_multiplier),
        mechanism="gaussian: clipped per-class feature sums and counts, sensitivity sqrt(2) * clip, released once",
    )


def release_mechanism(noise_multiplier: float) -> list:
    """The release as an accountant entry [sigma, q, steps]: one full-batch Gaussian mechanism."""
    return [float(noise_multiplier), 1.0, 1]

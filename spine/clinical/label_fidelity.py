"""Label fidelity: how well a conditional generator's samples show their conditioning class, as the spine classifier
judges them (the agreement the clinical loss optimises, measured on fresh samples for metrics and reports)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spine.classifier.artifact import SpineClassifier, check_compatible
from spine.scoring import evaluate_scores


@torch.no_grad()
def label_fidelity(
    G: nn.Module,
    classifier: SpineClassifier,
    num_per_class: int = 500,
    seed: int = 0,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """How well generated images show their conditioning class, judged by the classifier.

    Samples `num_per_class` images per class (z from a seeded normal, noise_mode='const') and reports, per class
    and overall, the accuracy of the classifier's decision (its validation thresholds for 'abnormality',
    argmax for 'lesion') and the AUC of its probabilities for the conditioning labels. G must already be on
    `device`; the classifier is moved there.
    """
    check_compatible(classifier, None, G.c_dim)
    classifier = classifier.to(device)
    generator = torch.Generator().manual_seed(seed)
    labels, probs = [], []
    for k in range(G.c_dim):
        for start in range(0, num_per_class, batch_size):
            n = min(batch_size, num_per_class - start)
            z = torch.randn(n, G.z_dim, generator=generator).to(device)
            c = F.one_hot(torch.full((n,), k), G.c_dim).to(device, torch.float32)
            img = G(z, c, noise_mode="const")
            probs.append(classifier.probabilities(classifier(classifier.preprocess_generated(img))).cpu())
            labels.append(torch.full((n,), k))
    labels_np, probs_np = torch.cat(labels).numpy(), torch.cat(probs).double().numpy()
    if classifier.spec.num_outputs == 1:
        predicted = (probs_np >= classifier.spec.thresholds[0]).astype(np.int64)
    else:
        predicted = probs_np.argmax(axis=1)
    names = list(classifier.spec.class_names)
    scores = evaluate_scores(labels_np, probs_np, names, n_resamples=200, seed=seed)
    per_class_auc = (
        {name: scores["auc"] for name in names}
        if scores["task"] == "binary"
        else {name: scores["per_class"][name]["auc"] for name in names}
    )
    return dict(
        num_per_class=num_per_class,
        seed=seed,
        per_class={
            name: dict(accuracy=float((predicted[labels_np == k] == k).mean()), auc=per_class_auc[name])
            for k, name in enumerate(names)
        },
        accuracy=float((predicted == labels_np).mean()),
        auc=scores["auc"] if scores["task"] == "binary" else scores["macro_auc"],
        auc_ci=scores["auc_ci"] if scores["task"] == "binary" else scores["macro_auc_ci"],
    )

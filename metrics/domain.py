"""Domain metrics that need no download: the feature space and decisions of the project's spine classifier.

Fréchet distance, KID and precision/recall in the classifier's penultimate features (the input of its last
linear layer) measure realism as the clinical classifier sees it; label fidelity measures whether conditional
samples show their conditioning class.

The metrics package knows no spine code: the spine side registers how to load a classifier.pkl and how to score
label fidelity (`register_classifier`, called by `spine.evaluation.classifier_metrics` when imported; train.py,
calc_metrics.py and the experiment import it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from metrics.detectors import PREPROCESSING_VERSION, Detector, file_sha1
from metrics.metric_names import key_part
from metrics.metric_utils import MetricOptions

# The classifier maps uint8 images to its own input (spine.classifier's preprocess_uint8).
CLASSIFIER_PREPROCESSING = f"v{PREPROCESSING_VERSION}:classifier-preprocess"


@dataclasses.dataclass(frozen=True)
class ClassifierProvider:
    """How the domain metrics reach the spine classifier.

    `load(path, device)` returns the classifier module (with `.net`, `.spec.num_outputs`, `.spec.arch` and
    `.preprocess_uint8`); `label_fidelity(G, classifier, num_per_class=, seed=, batch_size=, device=)` returns a
    dict with `accuracy`, `auc` and `per_class` {class name: {accuracy, auc}}.
    """

    load: Callable[[str, torch.device], nn.Module]
    label_fidelity: Callable[..., dict[str, Any]]


_providers: dict[str, ClassifierProvider] = {}  # the registered provider under 'spine'


def register_classifier(provider: ClassifierProvider) -> None:
    """Make the *_spine and label_fidelity metrics available (the latest registration wins)."""
    _providers["spine"] = provider


def classifier_provider(metric: str) -> ClassifierProvider:
    if "spine" not in _providers:
        raise ValueError(
            f"{metric} needs the spine classifier, which nothing has registered: import "
            f"spine.evaluation.classifier_metrics first (train.py and calc_metrics.py do)"
        )
    return _providers["spine"]


def _last_linear(net: nn.Module, num_outputs: int) -> nn.Linear:
    """The classification head: the last nn.Linear registered in the network, checked against the logit count."""
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not linears or linears[-1].out_features != num_outputs:
        raise ValueError(f"cannot find the classifier's final linear layer with {num_outputs} outputs")
    return linears[-1]


def penultimate_features(classifier: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Input of the classifier's final linear layer [N, D] for network input `x` (a forward pre-hook)."""
    head = _last_linear(classifier.net, classifier.spec.num_outputs)
    captured: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
    try:
        with torch.no_grad():
            classifier(x)
    finally:
        handle.remove()
    return captured[0].flatten(1)


def require_classifier(opts: MetricOptions, metric: str) -> str:
    if not opts.classifier:
        raise ValueError(
            f"{metric} needs a spine classifier: pass classifier=<classifier.pkl> (calc_metrics.py --classifier)"
        )
    return opts.classifier


def spine_detector(classifier_path: str, device: torch.device) -> Detector:
    """Penultimate features of classifier.pkl, with the classifier's own input mapping."""
    classifier = classifier_provider("the spine feature space").load(classifier_path, device)
    sha1 = file_sha1(classifier_path)

    def extract(images: torch.Tensor) -> torch.Tensor:
        return penultimate_features(classifier, classifier.preprocess_uint8(images))

    return Detector(
        name="spine",
        description=f"spine classifier {classifier_path} (sha1 {sha1[:12]}, "
        f"{classifier.spec.arch}, penultimate features)",
        sha1=sha1,
        preprocessing=CLASSIFIER_PREPROCESSING,
        options="penultimate",
        extract=extract,
    )


def compute_label_fidelity(opts: MetricOptions, metric: str, num_per_class: int) -> dict[str, float]:
    """Accuracy and AUC of the classifier on `num_per_class` samples per class, overall and per class name."""
    provider = classifier_provider(metric)
    classifier = provider.load(require_classifier(opts, metric), opts.device)
    report = provider.label_fidelity(
        opts.G, classifier, num_per_class=num_per_class, seed=opts.seed, batch_size=opts.batch_size, device=opts.device
    )
    results = {f"{metric}_accuracy": report["accuracy"], f"{metric}_auc": report["auc"]}
    for name, values in report["per_class"].items():
        part = key_part(name)
        results.update({f"{metric}_{part}_accuracy": values["accuracy"], f"{metric}_{part}_auc": values["auc"]})
    return results

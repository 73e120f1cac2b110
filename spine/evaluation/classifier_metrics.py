"""Registers the spine classifier with the metrics package: importing this module makes the *_spine metrics and
label_fidelity<N> available to `metrics.metric_main.calc_metric` (metrics/ imports nothing from spine/)."""

from __future__ import annotations

from metrics.domain import ClassifierProvider, register_classifier
from spine.classifier.artifact import load_classifier
from spine.clinical.label_fidelity import label_fidelity

register_classifier(ClassifierProvider(load=load_classifier, label_fidelity=label_fidelity))

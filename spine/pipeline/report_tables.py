"""Rows of the report's metric and step-timing tables, as a reader wants them: one row per distinct number, each
beside its real-vs-real baseline and labelled with what it compares, steps in the order they ran with a total."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _distinct(results: Mapping[str, Any]) -> list[tuple[str, list[str], str]]:
    """(first key, the other keys of the same number, the number as text) per distinct result of one metric. Results
    of one metric that repeat one number under several names (a two-class label fidelity's `auc`, `normal_auc` and
    `abnormal_auc`: the one-vs-rest AUCs of two classes are the same AUC) become one; results of another quantity
    (precision and recall both 1) stay apart."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for key in sorted(results):
        groups.setdefault((metric_of(key), key.rsplit("_", 1)[-1], _text(results[key])), []).append(key)
    distinct = []
    for (metric, _quantity, text), keys in groups.items():
        first = min(keys, key=len)
        distinct.append((first, [key.removeprefix(metric + "_") for key in keys if key != first], text))
    return distinct


def _text(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _label(first: str, others: list[str]) -> str:
    return first + (f" (also {', '.join(others)})" if others else "")


def fidelity_rows(
    variant: str, results: Mapping[str, Any], baseline: Mapping[str, Any], judge_reference: str
) -> list[list[str]]:
    """[variant, metric, what it compares, value, real vs real at the same sizes, value / real] per distinct result
    of one variant; the baseline columns are empty where the metric has no real-vs-real form (label fidelity) or it
    was not computed. `judge_reference`: the real images the independent judge's metrics compare with."""
    rows = []
    for first, others, text in _distinct(results):
        generated, real = comparison(first, judge_reference)
        base = baseline.get(first)
        ratio = ""
        if first.endswith(("_precision", "_recall")) and isinstance(base, float) and base > 0:
            ratio = f"{results[first] / base:.2f}"
        rows.append(
            [variant, _label(first, others), generated, text, "" if base is None else f"{_text(base)} ({real})", ratio]
        )
    return rows


_SPACES = dict(
    inception="Inception features",
    vgg16="VGG16 features",
    spine="the clinical judge's features",
    pixel="grey levels",
)


def comparison(key: str, judge_reference: str = "training") -> tuple[str, str]:
    """What a result compares, and what its real-vs-real baseline compares at the same sizes, in words:
    ('500 generated vs 500 training images, Inception features', '500 test vs 500 training')."""
    from metrics.metric_names import MetricNameError, parse_metric

    independent = key.startswith("independent_")
    metric = metric_of(key.removeprefix("independent_"))
    try:
        spec = parse_metric(metric)
    except MetricNameError:
        return "", ""
    space = "the independent judge's features" if independent else _SPACES.get(spec.space, spec.space)
    reference = judge_reference if independent else "training"
    if spec.kind == "label_fidelity":
        judge = "the independent judge" if independent else "the clinical judge"
        return f"{spec.count} generated per class, classified by {judge}", ""
    reals = f"all {reference}" if spec.max_real is None or spec.kind == "class_diff" else f"{spec.max_real} {reference}"
    return f"{spec.count} generated vs {reals} images, {space}", f"{spec.count} test vs {reals}"


def metric_of(key: str) -> str:
    """The metric a result key belongs to: its longest leading part that is a metric name (`fid1k_full`,
    `pr1003_inception_recall` -> `pr1003_inception`, `label_fidelity200_normal_auc` -> `label_fidelity200`), after an
    `independent_` prefix, which it keeps; else up to its first part with a count."""
    from metrics.metric_names import is_valid_metric

    prefix = "independent_" if key.startswith("independent_") else ""
    parts = key.removeprefix(prefix).split("_")
    for end in range(len(parts), 0, -1):
        if is_valid_metric("_".join(parts[:end])):
            return prefix + "_".join(parts[:end])
    for i, part in enumerate(parts):
        if any(ch.isdigit() for ch in part):
            return prefix + "_".join(parts[: i + 1])
    return key


def timing_rows(steps: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    """[step, time] in the order the steps finished (the pipeline's order), then the total."""
    order = sorted(steps, key=lambda name: (steps[name].get("finished", 0.0), list(steps).index(name)))
    rows = [[name, f"{steps[name]['seconds']:.0f} s"] for name in order]
    total = sum(float(steps[name]["seconds"]) for name in order)
    return rows + [["total", f"{total:.0f} s ({total / 60:.1f} min)"]]


def fid_note(metrics: list[str]) -> str:
    """What the metric table's FIDs mean, or how to get the standard (Inception) one when the run has none."""
    from metrics.metric_names import parse_metric

    specs = [parse_metric(name) for name in metrics]
    notes = []
    if any(spec.kind in ("fid", "kid", "pr", "class_diff") for spec in specs):
        notes.append(
            "FID, KID, precision/recall and the class difference compare with the 'real vs real' column: the "
            "test images against the training images at the same counts, which is what two real samples score "
            "(FID of a few hundred images is biased upwards; the baseline carries the same bias)."
        )
    if not any(spec.kind == "fid" and spec.space == "inception" for spec in specs):
        notes.append(
            "No Inception FID in this run: on a CPU it costs about half a second per image; "
            "`calc_metrics.py --metrics=fid1k --network=<snapshot>` computes it for a generator and "
            "`calc_metrics.py --metrics=fid1k --data=<train> --data2=<test>` its real-vs-real baseline."
        )
    return " ".join(notes)

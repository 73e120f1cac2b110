"""Rows of the report's metric and step-timing tables, as a reader wants them: one row per distinct number, steps in
the order they ran with a total."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def metric_rows(variant: str, results: Mapping[str, Any]) -> list[list[str]]:
    """[variant, metric, value] per distinct result of one variant. Results of one metric that repeat one number
    under several names (a two-class label fidelity's `auc`, `normal_auc` and `abnormal_auc`: the one-vs-rest AUCs
    of two classes are the same AUC) become one row that names them all."""
    groups: dict[tuple[str, str], list[str]] = {}
    for key in sorted(results):
        value = results[key]
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        groups.setdefault((metric_of(key), text), []).append(key)
    rows = []
    for (metric, text), keys in groups.items():
        first = min(keys, key=len)
        others = [key.removeprefix(metric + "_") for key in keys if key != first]
        rows.append([variant, first + (f" (also {', '.join(others)})" if others else ""), text])
    return rows


def metric_of(key: str) -> str:
    """The metric a result key belongs to: up to its first part with a count (`label_fidelity200_normal_auc` ->
    `label_fidelity200`, `independent_label_fidelity200_auc` -> `independent_label_fidelity200`)."""
    parts = key.split("_")
    for i, part in enumerate(parts):
        if any(ch.isdigit() for ch in part):
            return "_".join(parts[: i + 1])
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
    if any(spec.kind == "fid" for spec in specs):
        notes.append(
            "FID and KID compare with the 'real vs real (baseline)' rows: the training images against the "
            "test images at the same count, which is what two real samples score."
        )
    if not any(spec.kind == "fid" and spec.space == "inception" for spec in specs):
        notes.append(
            "No Inception FID in this run: on a CPU it costs about half a second per image; "
            "`calc_metrics.py --metrics=fid1k --network=<snapshot>` computes it for a generator and "
            "`calc_metrics.py --metrics=fid1k --data=<train> --data2=<test>` its real-vs-real baseline."
        )
    return " ".join(notes)

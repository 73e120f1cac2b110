"""Training randomness: arms replicated over training seeds (`<name>`, `<name>-seed1`, ...), their means with
Student-t intervals, and the difference between two variants paired by seed.

The test-set bootstrap intervals of a downstream table cover the test images only; these cover the spread a new
training seed would see. Inputs are an experiment's step outputs ({step name: outputs}, as run_experiment returns
them and the report reads them back).
"""

from __future__ import annotations

from typing import Any

import numpy as np

Interval = tuple[float, float, float]  # mean, low, high


def across_seeds(values: list[float], confidence: float = 0.95) -> Interval:
    """(mean, low, high): Student-t interval of the mean over training seeds."""
    import scipy.stats
    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        raise ValueError(f"an interval across seeds needs at least two values, got {len(x)}")
    half = scipy.stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def seed_groups(arms: list[str]) -> dict[str, list[str]]:
    """{'synthetic-spinegan': ['synthetic-spinegan', 'synthetic-spinegan-seed1', ...]} for arms with replicates."""
    groups: dict[str, list[str]] = {}
    for arm in arms:
        base, sep, seed = arm.rpartition("-seed")
        groups.setdefault(base if sep and seed.isdigit() else arm, []).append(arm)
    return {base: members for base, members in groups.items() if len(members) > 1}


def group_summaries(down: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per replicated synthetic arm of a downstream summary: seeds, synthetic-only AUC and skill ratio intervals."""
    return {base: dict(num_seeds=len(members), auc=across_seeds([down["aucs"][arm] for arm in members]),
                       skill=across_seeds([down["skills"][arm] for arm in members]))
            for base, members in seed_groups(list(down.get("skills", {}))).items()}


def paired_differences(steps: dict[str, Any], treated: str, control: str) -> tuple[int, dict[str, Interval]]:
    """`treated` minus `control` (variant names), paired by training seed (each pair shares its seed, data and
    preset): (number of pairs, {quantity: interval of the mean difference}) for the synthetic-only skill and plain
    ratios of the downstream table and every float metric both arms report. Fewer than two pairs: (n, {})."""
    down = steps["downstream"]
    seeds = [arm.removeprefix(f"synthetic-{treated}") for arm in down.get("skills", {})
             if arm == f"synthetic-{treated}" or arm.startswith(f"synthetic-{treated}-seed")]
    pairs = [(treated + seed, control + seed) for seed in seeds if f"synthetic-{control}{seed}" in down["skills"]]
    if len(pairs) < 2:
        return len(pairs), {}
    values = {"skill ratio": {name: down["skills"][f"synthetic-{name}"] for pair in pairs for name in pair},
              "plain ratio": {name: down["ratios"][f"synthetic-{name}"] for pair in pairs for name in pair}}
    metrics = {name: _float_metrics(steps, name) for pair in pairs for name in pair}
    for metric in sorted(set.intersection(*(set(found) for found in metrics.values()))):
        values[metric] = {name: found[metric] for name, found in metrics.items()}
    return len(pairs), {label: across_seeds([value[t] - value[c] for t, c in pairs]) for label, value in values.items()}


def format_interval(interval: Interval, digits: int = 3, sign: str = "") -> str:
    """'mean (low to high)'; sign="+" writes differences with their sign."""
    mean, low, high = interval
    return f"{mean:{sign}.{digits}f} ({low:{sign}.{digits}f} to {high:{sign}.{digits}f})"


def _float_metrics(steps: dict[str, Any], name: str) -> dict[str, float]:
    results = steps.get(f"metrics/{name}", {}).get("results", {})
    return {key: value for key, value in results.items() if isinstance(value, float)}

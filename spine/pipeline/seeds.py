"""Training randomness: arms replicated over training seeds (`spine.pipeline.arms.replicate_groups`), their means
with Student-t intervals, and the difference between two arms paired by seed.

The test-set bootstrap intervals of a downstream table cover the test images only; these cover the spread a new
training seed would see. Inputs are an experiment's step outputs ({step name: outputs}, as run_experiment returns
them and the report reads them back).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from spine.pipeline.arms import Arm, replicate_groups, synthetic_arms
from spine.pipeline.config import ExperimentConfig

Interval = tuple[float, float, float]  # mean, low, high


def across_seeds(values: list[float], confidence: float = 0.95) -> Interval:
    """(mean, low, high): Student-t interval of the mean over training seeds."""
    import scipy.stats

    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        raise ValueError(f"an interval across seeds needs at least two values, got {len(x)}")
    half = scipy.stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def group_summaries(down: dict[str, Any], config: ExperimentConfig) -> dict[str, dict[str, Any]]:
    """Per arm of `config` trained under several seeds, over its seeds in this downstream summary: the number of
    seeds, synthetic-only AUC and skill ratio intervals (arms with fewer than two seeds in the table are left out)."""
    summaries = {}
    for name, arms in replicate_groups(config).items():
        keys = [arm.key for arm in arms if arm.key in down.get("skills", {})]
        if len(keys) > 1:
            summaries[name] = dict(
                num_seeds=len(keys),
                auc=across_seeds([down["aucs"][key] for key in keys]),
                skill=across_seeds([down["skills"][key] for key in keys]),
            )
    return summaries


def paired_differences(
    steps: dict[str, Any], config: ExperimentConfig, treated: str, control: str
) -> tuple[int, dict[str, Interval]]:
    """`treated` minus `control` (arm names), paired by training seed (each pair shares its seed, data and
    preset): (number of pairs, {quantity: interval of the mean difference}) for the synthetic-only skill and plain
    ratios of the downstream table and every float metric both arms report. Fewer than two pairs: (n, {}); arms
    trained for different kimg are no pairs ((0, {}), `kimg_mismatch` says why)."""
    if kimg_mismatch(config, treated, control):
        return 0, {}
    down = steps["downstream"]
    seeded = {
        name: {arm.seed: arm for arm in seeds_of(config, name) if arm.key in down.get("skills", {})}
        for name in (treated, control)
    }
    pairs = [(arm, seeded[control][seed]) for seed, arm in seeded[treated].items() if seed in seeded[control]]
    if len(pairs) < 2:
        return len(pairs), {}
    arms = [arm for pair in pairs for arm in pair]
    values = {
        "skill ratio": {arm.variant: down["skills"][arm.key] for arm in arms},
        "plain ratio": {arm.variant: down["ratios"][arm.key] for arm in arms},
    }
    metrics = {arm.variant: _float_metrics(steps, arm.variant) for arm in arms}
    for metric in sorted(set.intersection(*(set(found) for found in metrics.values()))):
        values[metric] = {name: found[metric] for name, found in metrics.items()}
    return len(pairs), {
        label: across_seeds([value[t.variant] - value[c.variant] for t, c in pairs]) for label, value in values.items()
    }


def kimg_mismatch(config: ExperimentConfig, treated: str, control: str) -> str | None:
    """Why two arms cannot be paired at their final snapshots, or None: they train for different kimg, so their
    difference would mix the treatment with training length (the training curve pairs them at equal kimg)."""
    variants = {v.name: v for v in config.variants}
    kimgs = {name: {config.kimg_of(variants[a.variant]) for a in seeds_of(config, name)} for name in (treated, control)}
    if not all(kimgs.values()) or kimgs[treated] == kimgs[control]:
        return None
    return (
        f"{treated} trains {', '.join(map(str, sorted(kimgs[treated])))} kimg and {control} "
        f"{', '.join(map(str, sorted(kimgs[control])))}: paired at equal kimg on the training curve only"
    )


def seeds_of(config: ExperimentConfig, name: str) -> list[Arm]:
    """The synthetic-only arms of arm `name` over its training seeds (itself alone when it has one seed)."""
    groups = replicate_groups(config)
    if name in groups:
        return groups[name]
    return (
        [arm for arm in synthetic_arms(config, config.mode_of(name)) if arm.variant == name]
        if name in {v.name for v in config.variants}
        else []
    )


def format_interval(interval: Interval, digits: int = 3, sign: str = "") -> str:
    """'mean (low to high)'; sign="+" writes differences with their sign."""
    mean, low, high = interval
    return f"{mean:{sign}.{digits}f} ({low:{sign}.{digits}f} to {high:{sign}.{digits}f})"


def _float_metrics(steps: dict[str, Any], name: str) -> dict[str, float]:
    results = steps.get(f"metrics/{name}", {}).get("results", {})
    return {key: value for key, value in results.items() if isinstance(value, float)}

"""The arms of an experiment as values (`spine.evaluation.arms.Arm`), read from its config, never from their names.

Replicates: variants that differ in nothing but their name and training seed are one arm trained under several
seeds (`replicate_groups`); the spread over seeds and the differences paired by seed (`spine.pipeline.seeds`)
read the arms from the config, not from their names.
"""

from __future__ import annotations

import dataclasses

from spine.evaluation.arms import Arm
from spine.pipeline.config import ExperimentConfig, Variant


def training_seed(config: ExperimentConfig, variant: Variant) -> int:
    """The seed a variant's GAN trains with: its own, else the experiment's."""
    return config.seed if variant.seed is None else variant.seed


def synthetic_arms(config: ExperimentConfig, mode: str) -> list[Arm]:
    """The synthetic-only arms of one label mode's downstream table, in its order: variants, then pools (each
    followed by its matched arm, with `pool_matched`)."""
    arms = [
        Arm("synthetic", v.name, training_seed(config, v)) for v in config.variants if config.mode_of(v.name) == mode
    ]
    for pool in (p for p in config.pools if config.mode_of(p.name) == mode):
        arms.append(Arm("synthetic", pool.name, pool=True))
        if config.pool_matched:
            arms.append(Arm("synthetic", pool.matched_name, pool=True))
    return arms


def replicate_groups(config: ExperimentConfig) -> dict[str, list[Arm]]:
    """{arm name: its synthetic-only arms, one per training seed} for every arm trained under several seeds; the
    arm is named by its first variant in the config."""
    groups: dict[Variant, list[Variant]] = {}
    for variant in config.variants:
        groups.setdefault(dataclasses.replace(variant, name="", seed=None), []).append(variant)
    return {
        members[0].name: [Arm("synthetic", v.name, training_seed(config, v)) for v in members]
        for members in groups.values()
        if len({training_seed(config, v) for v in members}) > 1
    }


def panel_variants(config: ExperimentConfig, mode: str) -> dict[str, list[str]]:
    """{name: its generators} for the evaluator panel on one label mode (the arms of `panel_arms`, else all): an arm
    trained under several seeds is one entry over its seeds (named by its first listed variant), then every other
    variant and pool alone."""
    arms = [arm for arm in synthetic_arms(config, mode) if not config.panel_arms or arm.variant in config.panel_arms]
    generators = {arm.variant for arm in arms}
    variants: dict[str, list[str]] = {}
    for group in replicate_groups(config).values():
        replicates = [arm for arm in group if arm.variant in generators]
        if len(replicates) > 1:
            variants[f"{replicates[0].variant} ({len(replicates)} seeds)"] = [arm.variant for arm in replicates]
    grouped = {generator for members in variants.values() for generator in members}
    variants.update({arm.variant: [arm.variant] for arm in arms if arm.variant not in grouped})
    return variants


def describe_arm(config: ExperimentConfig, name: str) -> str:
    """What a synthetic arm's images are, in words: how many generators, of how many kimg, how many images per
    class; so that tables say which arms are matched in what."""
    variants = {v.name: v for v in config.variants}
    per_class = config.synth_per_class
    if name in variants:
        long = [p.name for p in config.pools if p.long_generator == name]
        what = f"one generator of {config.kimg_of(variants[name])} kimg"
        if long:
            what += f" (the combined kimg of {', '.join(long)})"
        snapshots = config.synth_snapshots_of(variants[name])
        if snapshots > 1:  # a trajectory pool: still one training run, so it compares with single generators
            what += f", its images drawn in turn from its last {snapshots} snapshots (every {config.snap} ticks)"
        return f"{what}, {per_class} images per class"
    for pool in config.pools:
        kimg = sum(config.kimg_of(variants[m]) for m in pool.members)
        if name == pool.name:
            count = len(pool.members)
            return f"pooled: {count} generators, {kimg} kimg in all, {count * per_class} images per class"
        if name == pool.matched_name:
            return f"pooled ({len(pool.members)} generators), subsampled to one generator's {per_class} per class"
    raise ValueError(f"{name!r}: not an arm of this experiment")

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
    """The synthetic-only arms of one label mode's downstream table, in its order: variants, then pools."""
    arms = [
        Arm("synthetic", v.name, training_seed(config, v)) for v in config.variants if config.mode_of(v.name) == mode
    ]
    return arms + [Arm("synthetic", p.name, pool=True) for p in config.pools if config.mode_of(p.name) == mode]


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
    """{name: its generators} for the evaluator panel on one label mode: an arm trained under several seeds is one
    entry over its seeds (named by its first variant), then every other variant and pool alone."""
    arms = synthetic_arms(config, mode)
    generators = {arm.variant for arm in arms}
    variants: dict[str, list[str]] = {}
    for name, replicates in replicate_groups(config).items():
        if name in generators:
            variants[f"{name} ({len(replicates)} seeds)"] = [arm.variant for arm in replicates]
    grouped = {generator for members in variants.values() for generator in members}
    variants.update({arm.variant: [arm.variant] for arm in arms if arm.variant not in grouped})
    return variants

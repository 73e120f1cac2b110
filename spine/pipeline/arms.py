"""The arms of an experiment as values, never as names to parse again.

An `Arm` is one training source of a downstream table: the real images, or a generator's images alone
('synthetic') or with the real ones ('mixed'); the generator is a variant or a pool of variants, and a variant
has its training seed. Its `key` is its name in the downstream table's outputs (`spine.evaluation.downstream`).

Replicates: variants that differ in nothing but their name and training seed are one arm trained under several
seeds (`replicate_groups`); the spread over seeds and the differences paired by seed (`spine.pipeline.seeds`)
read the arms from the config, not from their names.
"""

from __future__ import annotations

import dataclasses

from spine.evaluation.downstream import REAL, mixed_arm, synthetic_arm
from spine.pipeline.config import ExperimentConfig, Variant

KINDS = ("real", "synthetic", "mixed")


@dataclasses.dataclass(frozen=True)
class Arm:
    kind: str
    variant: str | None = None  # the generator: a variant's or a pool's name; None for the real images
    seed: int | None = None  # the variant's training seed; None for the real images and for pools
    pool: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"arm kind {self.kind!r}: expected one of {KINDS}")
        if (self.kind == "real") != (self.variant is None):
            raise ValueError(f"a {self.kind} arm {'has no' if self.kind == 'real' else 'needs a'} generator")

    @property
    def key(self) -> str:
        """The arm's name in the downstream table."""
        if self.kind == "real":
            return REAL
        return synthetic_arm(self.variant) if self.kind == "synthetic" else mixed_arm(self.variant)


def training_seed(config: ExperimentConfig, variant: Variant) -> int:
    """The seed a variant's GAN trains with: its own, else the experiment's."""
    return config.seed if variant.seed is None else variant.seed


def synthetic_arms(config: ExperimentConfig, mode: str) -> list[Arm]:
    """The synthetic-only arms of one label mode's downstream table, in its order: variants, then pools."""
    arms = [Arm("synthetic", v.name, training_seed(config, v)) for v in config.variants
            if config.mode_of(v.name) == mode]
    return arms + [Arm("synthetic", p.name, pool=True) for p in config.pools if config.mode_of(p.name) == mode]


def replicate_groups(config: ExperimentConfig) -> dict[str, list[Arm]]:
    """{arm name: its synthetic-only arms, one per training seed} for every arm trained under several seeds; the
    arm is named by its first variant in the config."""
    groups: dict[Variant, list[Variant]] = {}
    for variant in config.variants:
        groups.setdefault(dataclasses.replace(variant, name="", seed=None), []).append(variant)
    return {members[0].name: [Arm("synthetic", v.name, training_seed(config, v)) for v in members]
            for members in groups.values() if len({training_seed(config, v) for v in members}) > 1}

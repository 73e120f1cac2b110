"""An arm of a downstream table as a value: the real images, or a generator's images alone ('synthetic') or with
the real ones ('mixed'). The generator is a variant of an experiment (with its training seed) or a pool of
variants. `Arm.key` is the arm's name in the table's outputs (downstream.json, classifier-<key>.pkl, the
experiment's step outputs); code reads an arm's kind and generator from the arm, never from its key.
"""

from __future__ import annotations

import dataclasses

KINDS = ("real", "synthetic", "mixed")
REAL = "real"  # the real arm's key
PREFIXES = dict(synthetic="synthetic-", mixed="real+synthetic-")  # of the other arms' keys


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
        """The arm's name in the downstream table's outputs: 'real', 'synthetic-<generator>',
        'real+synthetic-<generator>'."""
        return REAL if self.kind == "real" else f"{PREFIXES[self.kind]}{self.variant}"

"""Study-level train/validation split, stratified by label and seeded.

Images of one study (one patient visit, often AP + lateral views) are near-duplicates for a
classifier, so a study lies entirely on one side; otherwise validation scores leak. Studies are
stratified by their label (the most frequent label among their images) so each class keeps about
the same share on both sides.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Hashable, Sequence

import numpy as np


def split_by_study(
    study_ids: Sequence[str | None], labels: Sequence[object], val_fraction: float, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Indices of the train and validation images, both sorted.

    An image without a study id (None) is a study of its own. Per label stratum,
    round(val_fraction * studies) studies go to validation, chosen by a seeded shuffle.
    """
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction={val_fraction}: expected a value in [0, 1]")
    if len(study_ids) != len(labels):
        raise ValueError(f"split_by_study: {len(study_ids)} study ids but {len(labels)} labels")
    members = _group_by_study(study_ids)
    rng = np.random.default_rng(seed)
    val_studies: set[str] = set()
    for studies in _strata(members, labels).values():
        order = rng.permutation(len(studies))
        val_studies.update(studies[k] for k in order[: round(val_fraction * len(studies))])
    val = sorted(i for s in val_studies for i in members[s])
    val_set = set(val)
    return [i for i in range(len(study_ids)) if i not in val_set], val


def _group_by_study(study_ids: Sequence[str | None]) -> dict[str, list[int]]:
    members: dict[str, list[int]] = collections.defaultdict(list)
    for i, study in enumerate(study_ids):
        members[study if study is not None else f"\0image-{i}"].append(i)
    return members


def _strata(members: dict[str, list[int]], labels: Sequence[object]) -> dict[Hashable, list[str]]:
    """Label stratum -> its studies in sorted order (sorting makes the result independent of input order)."""
    strata: dict[Hashable, list[str]] = collections.defaultdict(list)
    for study in sorted(members):
        keys = [_hashable(labels[i]) for i in members[study]]
        counts = collections.Counter(keys)
        strata[max(sorted(counts), key=lambda k: counts[k])].append(study)
    return dict(sorted(strata.items()))


def _hashable(label: object) -> str:
    """Labels may be ints, float vectors or None; a canonical JSON string makes them comparable."""
    return json.dumps(label)

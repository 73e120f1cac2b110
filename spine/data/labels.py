"""Image-level labels from VinDr-SpineXR box annotations (one CSV row per box).

Label modes (class names are stored in dataset.json so that label indices stay interpretable):
- ``abnormality``: 0 normal, 1 abnormal. An image is abnormal iff any of its (consensus) findings is
  a lesion, i.e. any row is not "No finding". The paper's script used ``set()`` on a single-row
  string, so images with exactly one box became "normal"; we do not reproduce that bug.
- ``lesion``: one class per image in the paper's order (No finding, Disc space narrowing, Foraminal
  stenosis, Osteophytes, Spondylolysthesis, Surgical implant, Vertebral collapse, Other lesions).
  Images with several lesion types follow ``multi_lesion``:
  ``drop`` (default, the paper: such images are left out), ``most-frequent`` (the type with most
  boxes; ties go to the earlier class), ``first-by-priority`` (the earliest class in the order above).
- ``multilabel``: multi-hot float vector over the 7 lesion classes (all zeros = No finding).
- ``none``: no labels.

The six rare VinDr classes (Ankylosis, ...) follow ``rare``: ``drop`` (default, the paper: images with
a rare lesion are left out of lesion/multilabel datasets), ``other`` (counted as "Other lesions") or
``keep`` (appended as classes of their own: 14 lesion classes, 13 multilabel classes). In the
abnormality mode a rare lesion always makes the image abnormal.

Radiologist disagreement follows ``consensus``: ``any`` (default: a lesion type reported by any
radiologist of the image counts) or ``all`` (a lesion type counts only if every radiologist who
read the image reported it; with ``all`` an image whose readers share no lesion type is normal).
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import os
from collections.abc import Iterable, Sequence

NO_FINDING = "No finding"
LESION_CLASSES = (
    NO_FINDING,
    "Disc space narrowing",
    "Foraminal stenosis",
    "Osteophytes",
    "Spondylolysthesis",
    "Surgical implant",
    "Vertebral collapse",
    "Other lesions",
)
OTHER_LESIONS = "Other lesions"
RARE_CLASSES = ("Ankylosis", "Enthesophytes", "Fracture", "Sclerotic lesion", "Subchondral sclerosis", "Foreign body")
ABNORMALITY_CLASSES = ("normal", "abnormal")
REQUIRED_COLUMNS = ("image_id", "study_id", "rad_id", "lesion_type")

LABEL_MODES = ("abnormality", "lesion", "multilabel", "none")
MULTI_LESION_POLICIES = ("drop", "most-frequent", "first-by-priority")
RARE_POLICIES = ("drop", "other", "keep")
CONSENSUS_POLICIES = ("any", "all")

Label = int | list[float] | None


class AnnotationError(ValueError):
    """The annotations CSV does not have the expected shape; the message names file, line, field."""


@dataclasses.dataclass(frozen=True)
class ImageAnnotation:
    """All rows of one image: (rad_id, lesion_type) per box, in file order."""

    image_id: str
    study_id: str
    rows: tuple[tuple[str, str], ...]


@dataclasses.dataclass(frozen=True)
class LabelSpec:
    """How rows become a label; see the module docstring for each option."""

    mode: str = "abnormality"
    multi_lesion: str = "drop"
    rare: str = "drop"
    consensus: str = "any"

    def __post_init__(self) -> None:
        for field, allowed in (
            ("mode", LABEL_MODES),
            ("multi_lesion", MULTI_LESION_POLICIES),
            ("rare", RARE_POLICIES),
            ("consensus", CONSENSUS_POLICIES),
        ):
            if getattr(self, field) not in allowed:
                raise ValueError(f"LabelSpec.{field}={getattr(self, field)!r}: expected one of {allowed}")


@dataclasses.dataclass(frozen=True)
class LabelledImage:
    image_id: str
    study_id: str
    label: Label


def read_annotations(csv_path: str | os.PathLike) -> dict[str, ImageAnnotation]:
    """Read a VinDr annotations CSV by column name; images sorted by image_id.

    Raises AnnotationError naming the file and column for a missing column, and the file, line and
    name for an unknown lesion type or an image listed under two studies.
    """
    known = set(LESION_CLASSES) | set(RARE_CLASSES)
    rows: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
    studies: dict[str, str] = {}
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise AnnotationError(
                f"{csv_path}: missing column {missing[0]!r} (expected columns {', '.join(REQUIRED_COLUMNS)})"
            )
        for row in reader:
            where = f"{csv_path}, line {reader.line_num}"
            image_id, study_id, lesion = row["image_id"].strip(), row["study_id"].strip(), row["lesion_type"].strip()
            if not image_id:
                raise AnnotationError(f"{where}: empty image_id")
            if lesion not in known:
                raise AnnotationError(f"{where}: unknown lesion type {lesion!r}")
            if studies.setdefault(image_id, study_id) != study_id:
                raise AnnotationError(f"{where}: image {image_id} listed under two studies")
            rows[image_id].append((row["rad_id"].strip(), lesion))
    return {i: ImageAnnotation(i, studies[i], tuple(rows[i])) for i in sorted(rows)}


def class_names(spec: LabelSpec) -> list[str]:
    """Class names in label-index order (multilabel: one per vector element; none: empty)."""
    if spec.mode == "abnormality":
        return list(ABNORMALITY_CLASSES)
    if spec.mode == "none":
        return []
    names = list(LESION_CLASSES) + (list(RARE_CLASSES) if spec.rare == "keep" else [])
    return names if spec.mode == "lesion" else names[1:]


def consensus_findings(image: ImageAnnotation, consensus: str) -> collections.Counter[str]:
    """Lesion type -> number of boxes, over the types that pass the consensus rule."""
    per_rad: dict[str, set[str]] = collections.defaultdict(set)
    for rad, lesion in image.rows:
        per_rad[rad].update([] if lesion == NO_FINDING else [lesion])
    kept = set.union(*per_rad.values()) if consensus == "any" else set.intersection(*per_rad.values())
    return collections.Counter(lesion for _, lesion in image.rows if lesion in kept)


def label_image(image: ImageAnnotation, spec: LabelSpec) -> tuple[Label, str | None]:
    """(label, None) for a kept image, or (None, reason) when the spec leaves the image out."""
    findings = consensus_findings(image, spec.consensus)
    if spec.mode == "none":
        return None, None
    if spec.mode == "abnormality":
        return int(bool(findings)), None
    if spec.rare == "drop" and any(name in RARE_CLASSES for name in findings):
        return None, "rare lesion type"
    if spec.rare == "other":
        findings = _merge_rare_into_other(findings)
    names = class_names(spec)
    if spec.mode == "multilabel":
        return [float(name in findings) for name in names], None
    return _single_lesion(findings, names, spec.multi_lesion)


def _merge_rare_into_other(findings: collections.Counter[str]) -> collections.Counter[str]:
    merged: collections.Counter[str] = collections.Counter()
    for name, count in findings.items():
        merged[OTHER_LESIONS if name in RARE_CLASSES else name] += count
    return merged


def _single_lesion(findings: collections.Counter[str], names: Sequence[str], policy: str) -> tuple[Label, str | None]:
    if not findings:
        return names.index(NO_FINDING), None
    if len(findings) > 1 and policy == "drop":
        return None, "several lesion types"
    if policy == "most-frequent":
        # Most boxes first, then the earlier class, so ties are deterministic.
        return min(names.index(n) for n in findings if findings[n] == max(findings.values())), None
    return min(names.index(n) for n in findings), None


def make_labels(
    annotations: Iterable[ImageAnnotation], spec: LabelSpec
) -> tuple[list[LabelledImage], collections.Counter[str]]:
    """Label every image; returns the kept images and a count of left-out images per reason."""
    kept, excluded = [], collections.Counter()
    for image in annotations:
        label, reason = label_image(image, spec)
        if reason is None:
            kept.append(LabelledImage(image.image_id, image.study_id, label))
        else:
            excluded[reason] += 1
    return kept, excluded


def count_classes(labels: Sequence[Label], names: Sequence[str]) -> dict[str, int]:
    """Images per class (int labels) or positives per class (vector labels)."""
    counts = dict.fromkeys(names, 0)
    for label in labels:
        if isinstance(label, int):
            counts[names[label]] += 1
        elif label is not None:
            for name, value in zip(names, label):
                counts[name] += int(value > 0)
    return counts

"""Lesions of the spine phantom: sampled per study, applied to the anatomy, drawn, and boxed.

Three lesion classes change the geometry before the spine is laid out (disc space narrowing, vertebral
collapse, spondylolisthesis); the others are shapes drawn over the anatomy. Every lesion returns
its ground-truth boxes (absolute pixel XYXY) from the same geometry that drew it.

``severity`` (in [0, 1], its range set by the phantom's difficulty) scales every lesion's effect: a lesion
with severity near 0 is barely different from normal anatomical variation.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from spine.data.labels import LESION_CLASSES, NO_FINDING
from spine.phantom.anatomy import (
    LUMBAR,
    NUM_GAPS,
    SACRUM,
    Canvas,
    Frame,
    Morphology,
    Patient,
    Spine,
    foramen,
    rounded_box_sdf,
)

PHANTOM_CLASSES = tuple(name for name in LESION_CLASSES if name != NO_FINDING)
# Relative frequency of each lesion type among findings (osteophytes dominate, as in VinDr-SpineXR).
CLASS_WEIGHTS = {
    "Osteophytes": 0.28,
    "Disc space narrowing": 0.17,
    "Surgical implant": 0.11,
    "Foraminal stenosis": 0.12,
    "Spondylolysthesis": 0.1,
    "Vertebral collapse": 0.08,
    "Other lesions": 0.1,
    "Fracture": 0.02,
    "Foreign body": 0.02,
}
LUMBAR_GAPS = tuple(range(LUMBAR[0], NUM_GAPS))  # L1-L2 ... L5-S1
METAL = 2.5  # attenuation of screws and rods (saturates the detector)
IDENTITY = Frame(0.0, 0.0, 1.0, 0.0, 0.0, 1.0)  # local (u, v) = pixel (x, y)

Box = tuple[float, float, float, float]


@dataclasses.dataclass(frozen=True)
class Lesion:
    """One finding of a study: its class, the vertebra or gap index it sits at, severity and free parameters."""

    kind: str
    site: int
    severity: float
    params: tuple[float, ...]


def sample_lesions(rng: np.random.Generator, abnormal: bool, severity_range: tuple[float, float]) -> tuple[Lesion, ...]:
    """1-3 distinct lesion types for an abnormal study (severities uniform in the range), none for a normal one."""
    if not abnormal:
        return ()
    kinds = list(CLASS_WEIGHTS)
    p = np.array([CLASS_WEIGHTS[k] for k in kinds])
    count = int(rng.choice((1, 2, 3), p=(0.6, 0.28, 0.12)))
    chosen = rng.choice(len(kinds), size=count, replace=False, p=p / p.sum())
    lesions = []
    for i in sorted(chosen):
        kind = kinds[i]
        sites = (
            LUMBAR_GAPS
            if kind in ("Disc space narrowing", "Foraminal stenosis", "Osteophytes")
            else (4, 5, 6)
            if kind == "Spondylolysthesis"
            else (3, 4, 5)
            if kind == "Surgical implant"
            else LUMBAR
        )
        weights = np.linspace(0.6, 1.4, len(sites))  # lower lumbar levels are more often affected
        site = int(rng.choice(sites, p=weights / weights.sum()))
        severity = rng.uniform(*severity_range)
        lesions.append(Lesion(kind, site, float(severity), tuple(float(x) for x in rng.random(6))))
    return tuple(lesions)


def apply_to_morphology(lesions: tuple[Lesion, ...], morph: Morphology) -> Morphology:
    """Shape changes of the geometric lesions (a new Morphology; the input is not modified)."""
    out = Morphology(morph.disc_scale.copy(), morph.wedge.copy(), morph.height_scale.copy(), morph.slip.copy())
    for les in lesions:
        s = les.severity
        if les.kind == "Disc space narrowing":
            out.disc_scale[les.site] *= 1.0 - 0.9 * s
        elif les.kind == "Vertebral collapse":
            out.wedge[les.site] = 0.1 + 0.7 * s
            out.height_scale[les.site] *= 1.0 - 0.35 * s
        elif les.kind == "Spondylolysthesis":
            direction = -1.0 if les.params[0] < 0.15 else 1.0  # a few retrolistheses
            out.slip[les.site] = direction * (0.08 + 0.5 * s)
        elif les.kind == "Surgical implant" and les.params[1] < 0.5:
            out.disc_scale[les.site] = max(out.disc_scale[les.site], 1.0)  # an interbody cage restores the disc
    return out


def _bbox(points: np.ndarray, pad: float) -> Box:
    return (
        float(points[:, 0].min() - pad),
        float(points[:, 1].min() - pad),
        float(points[:, 0].max() + pad),
        float(points[:, 1].max() + pad),
    )


def _frame_points(frame: Frame, uv: list[tuple[float, float]]) -> np.ndarray:
    u, v = np.array(uv, np.float64).T
    return np.stack(frame.to_xy(u, v), axis=1)


def draw_osteophytes(
    canvas: Canvas, spine: Spine, patient: Patient, les: Lesion, edge: float, scale: float = 1.0
) -> list[Box]:
    """Beak-shaped spurs at the anterior corners facing the gap (one or both sides)."""
    boxes = []
    which = (0,) if les.params[0] < 0.3 else (1,) if les.params[0] < 0.6 else (0, 1)
    for side in which:
        vert = spine.vertebrae[les.site + side]
        w, h = vert.width, vert.height
        sign = 1.0 if side == 0 else -1.0  # inferior corner of the upper body, superior of the lower
        corner = (0.5 * w - 0.04 * w, sign * (float(vert.half_height(np.array(0.5 * w))) - 0.04 * h))
        length = (0.15 + 0.75 * les.severity) * w * scale
        angle = math.radians(25 + 35 * les.params[2])
        tip = (corner[0] + length * math.cos(angle), corner[1] + sign * length * math.sin(angle))
        half = (0.05 * h + 0.12 * h * les.severity) * scale
        canvas.add_capsule(vert.frame, corner, tip, half, patient.cortex + patient.bone_density, edge)
        boxes.append(_bbox(_frame_points(vert.frame, [corner, tip]), half + 0.05 * h))
    return boxes


def draw_implant(
    canvas: Canvas, spine: Spine, patient: Patient, les: Lesion, edge: float, scale: float = 1.0
) -> list[Box]:
    """Pedicle screws in 2-3 vertebrae joined by a rod, and sometimes an interbody cage."""
    span = 2 if les.params[3] < 0.6 else 3
    levels = range(les.site, min(les.site + span, SACRUM + 1))
    heads, points = [], []
    u_thick = 0.055 * spine.unit * scale
    for k in levels:
        vert = spine.vertebrae[k]
        w, h = vert.width, vert.height
        v0 = -0.5 * h + 0.3 * spine.unit
        tail, tip = (-1.0 * w, v0 - 0.05 * spine.unit), (0.3 * w, v0 + 0.05 * spine.unit)
        canvas.add_capsule(vert.frame, tail, tip, u_thick, METAL, edge)
        canvas.add_ellipse(vert.frame, tail, (0.12 * spine.unit * scale, 0.12 * spine.unit * scale), METAL, edge)
        heads.append(_frame_points(vert.frame, [tail])[0])
        points.append(_frame_points(vert.frame, [tail, tip]))
    for a, b in zip(heads[:-1], heads[1:]):
        canvas.add_capsule(IDENTITY, tuple(a), tuple(b), 0.05 * spine.unit * scale, METAL, edge)
    if les.params[1] < 0.5:
        upper = spine.vertebrae[les.site]
        d = spine.disc_heights[les.site]
        cv = 0.5 * upper.height + 0.5 * d
        hu, hv = 0.3 * upper.width, 0.45 * d
        t = 0.04 * spine.unit + 0.5
        canvas.stamp(
            upper.frame,
            (0.0, cv),
            math.hypot(hu, hv) + 3,
            lambda u, v: 0.8 * METAL * np.exp(-((rounded_box_sdf(u, v - cv, hu, hv, 0.2 * hv) / t) ** 2)),
        )
        points.append(_frame_points(upper.frame, [(-hu, cv - hv), (hu, cv + hv)]))
    return [_bbox(np.concatenate(points), 0.15 * spine.unit * max(scale, 1.0))]


def draw_foraminal_stenosis(
    canvas: Canvas, spine: Spine, patient: Patient, les: Lesion, edge: float, scale: float = 1.0
) -> list[Box]:
    """Bone (facet hypertrophy, posterior osteophyte) growing into the foramen behind the gap."""
    frame, (cu, cv), (hu, hv) = foramen(spine, les.site)
    s = les.severity
    density = patient.bone_density + 0.5 * patient.cortex
    canvas.add_ellipse(
        frame,
        (cu - 0.6 * hu, cv + 0.25 * hv),
        (hu * (0.5 + 1.0 * s) * scale, hv * (0.35 + 0.7 * s) * scale),
        density,
        edge,
    )
    canvas.add_ellipse(
        frame,
        (cu + 0.8 * hu, cv + 0.35 * hv),
        (hu * (0.3 + 0.6 * s) * scale, hv * (0.2 + 0.4 * s) * scale),
        density,
        edge,
    )
    su, sv = hu * max(scale, 1.0), hv * max(scale, 1.0)  # the grown ellipses stay inside the box
    corners = [(cu - su, cv - sv), (cu + su, cv - sv), (cu + su, cv + sv), (cu - su, cv + sv)]
    return [_bbox(_frame_points(frame, corners), 0.05 * spine.unit)]


def draw_focal_lesion(
    canvas: Canvas, spine: Spine, patient: Patient, les: Lesion, edge: float, scale: float = 1.0
) -> list[Box]:
    """A lytic (dark) or sclerotic (bright) spot inside a vertebral body."""
    vert = spine.vertebrae[les.site]
    s = les.severity
    center = ((les.params[1] - 0.5) * 0.5 * vert.width, (les.params[2] - 0.5) * 0.4 * vert.height)
    r = (0.15 + 0.3 * s) * vert.height * scale
    contrast = (0.4 + 1.0 * s) * patient.bone_density
    density = -contrast if les.params[0] < 0.6 else 1.2 * contrast
    canvas.add_ellipse(vert.frame, center, (r, 0.85 * r), density, max(edge, 0.25 * r))
    return [_bbox(_frame_points(vert.frame, [center]), 1.25 * r)]


def draw_fracture(
    canvas: Canvas, spine: Spine, patient: Patient, les: Lesion, edge: float, scale: float = 1.0
) -> list[Box]:
    """A lucent fracture line across a vertebral body (a rare VinDr class)."""
    vert = spine.vertebrae[les.site]
    w, h = vert.width, vert.height
    v0 = (les.params[1] - 0.5) * 0.5 * h
    p0, p1 = (-0.45 * w, v0 - 0.15 * h), (0.45 * w, v0 + 0.15 * h)
    canvas.add_capsule(vert.frame, p0, p1, (0.03 * h + 0.5) * scale, -0.7 * patient.bone_density, edge)
    return [_bbox(vert.corners(), 0.05 * h)]


def draw_foreign_body(
    canvas: Canvas, spine: Spine, patient: Patient, les: Lesion, edge: float, scale: float = 1.0
) -> list[Box]:
    """A small metallic object (clip, pin) in the soft tissue in front of the spine (a rare VinDr class)."""
    vert = spine.vertebrae[les.site]
    center = ((1.0 + 1.2 * les.params[1]) * vert.width, (les.params[2] - 0.5) * 2.0 * vert.height)
    half = (0.15 + 0.2 * les.params[3]) * spine.unit * scale
    p0, p1 = (center[0] - half, center[1] - 0.4 * half), (center[0] + half, center[1] + 0.4 * half)
    canvas.add_capsule(vert.frame, p0, p1, (0.05 * spine.unit + 0.5) * scale, METAL, edge)
    return [_bbox(_frame_points(vert.frame, [p0, p1]), 0.1 * spine.unit * scale + 1)]


def _geometric_box(spine: Spine, les: Lesion) -> list[Box]:
    """Boxes of the lesions that live in the geometry: the narrowed disc, the collapsed body, the slipped pair."""
    verts = spine.vertebrae
    pad = 0.06 * spine.unit
    if les.kind == "Disc space narrowing":
        pts = np.concatenate([verts[les.site].corners()[2:], verts[les.site + 1].corners()[:2]])
    elif les.kind == "Vertebral collapse":
        pts = verts[les.site].corners()
    else:  # Spondylolysthesis: the slipped vertebra and the top of the one below
        pts = np.concatenate([verts[les.site].corners(), verts[les.site + 1].corners()[:2]])
    return [_bbox(pts, pad)]


DRAWERS = {
    "Osteophytes": draw_osteophytes,
    "Surgical implant": draw_implant,
    "Foraminal stenosis": draw_foraminal_stenosis,
    "Other lesions": draw_focal_lesion,
    "Fracture": draw_fracture,
    "Foreign body": draw_foreign_body,
}


def draw_lesions(
    canvas: Canvas, spine: Spine, patient: Patient, lesions: tuple[Lesion, ...], edge: float, scale: float = 1.0
) -> list[tuple[str, Box]]:
    """Draw the overlay lesions and return (class, box) for every lesion that is visible in the image.

    ``scale`` multiplies the overlay lesions' sizes (spur length and thickness, spot radius, metal thickness), so
    that they stay several pixels wide when the image is used at a low resolution (the demo's 32x32).
    """
    rows, cols = canvas.mu.shape
    found = []
    for les in lesions:
        boxes = (
            DRAWERS[les.kind](canvas, spine, patient, les, edge, scale)
            if les.kind in DRAWERS
            else _geometric_box(spine, les)
        )
        for box in boxes:
            clipped = clip_box(box, rows, cols)
            if clipped is not None:
                found.append((les.kind, clipped))
    return found


def clip_box(box: Box, rows: int, cols: int, min_visible: float = 0.5) -> Box | None:
    """The box clipped to the image, or None when less than ``min_visible`` of its area is inside."""
    x0, y0, x1, y1 = box
    cx0, cy0, cx1, cy1 = max(x0, 0.0), max(y0, 0.0), min(x1, cols - 1.0), min(y1, rows - 1.0)
    if cx1 - cx0 < 2 or cy1 - cy0 < 2:
        return None
    if (cx1 - cx0) * (cy1 - cy0) < min_visible * (x1 - x0) * (y1 - y0):
        return None
    return (cx0, cy0, cx1, cy1)


def reader_box(rng: np.random.Generator, box: Box, rows: int, cols: int, spread: float) -> Box:
    """One radiologist's version of a box: each edge moved by about ``spread`` of the box size."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    jit = rng.normal(0.0, spread, 4) * np.array([w, h, w, h])
    nx0, ny0 = min(max(x0 + jit[0], 0.0), cols - 3.0), min(max(y0 + jit[1], 0.0), rows - 3.0)
    nx1, ny1 = max(min(x1 + jit[2], cols - 1.0), nx0 + 2.0), max(min(y1 + jit[3], rows - 1.0), ny0 + 2.0)
    return (nx0, ny0, nx1, ny1)

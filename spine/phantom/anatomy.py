"""Geometry and rendering of a procedural lateral lumbar spine radiograph (T11 to the sacrum).

The phantom works in two stages so that lesions can change the anatomy before it is drawn:
``layout_spine`` turns a patient (study-level anatomy) and a view (image-level positioning) into
vertebra frames in pixel coordinates, and ``Canvas`` accumulates attenuation from shapes stamped
in those frames. Every shape is evaluated only on its own bounding window, with numpy
broadcasting, so an image costs a few milliseconds at 256 pixels.

Coordinates: x to the right, y down, in pixels. Each vertebra has a frame with ``n`` the unit
vector towards anterior and ``d`` the unit vector down the spine; local coordinates are
``u`` (anterior) and ``v`` (caudal).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import scipy.ndimage

LEVELS = ("T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1")
LUMBAR = tuple(range(2, 7))  # indices of L1..L5 in LEVELS
SACRUM = len(LEVELS) - 1
NUM_GAPS = len(LEVELS) - 1  # gap g lies between vertebra g and g + 1
# Share of the total lordosis taken by each gap (T11-T12 ... L5-S1): lower gaps are more lordotic.
_GAP_LORDOSIS = np.array([-0.06, -0.02, 0.06, 0.10, 0.15, 0.22, 0.55])
_GAP_LORDOSIS = _GAP_LORDOSIS / _GAP_LORDOSIS.sum()


@dataclasses.dataclass
class Morphology:
    """Per-level shape modifiers; normal anatomy jitters them slightly, lesions push them further."""

    disc_scale: np.ndarray  # [NUM_GAPS] disc height multiplier
    wedge: np.ndarray  # [len(LEVELS)] fraction of anterior body height lost
    height_scale: np.ndarray  # [len(LEVELS)] whole-body height multiplier
    slip: np.ndarray  # [len(LEVELS)] anterior slip of vertebra k over k + 1, in body widths

    @staticmethod
    def sample(rng: np.random.Generator) -> Morphology:
        n = len(LEVELS)
        return Morphology(
            disc_scale=rng.uniform(0.78, 1.22, NUM_GAPS),
            wedge=rng.uniform(-0.04, 0.1, n),
            height_scale=rng.uniform(0.94, 1.06, n),
            slip=rng.normal(0.0, 0.015, n),
        )


@dataclasses.dataclass
class Patient:
    """Study-level anatomy, shared by all images of a study (same patient, same lesions)."""

    pitch: float  # vertebral level pitch as a fraction of image height
    aspect: float  # body AP depth / body height
    disc_ratio: float  # normal disc height / body height
    lordosis: float  # total lumbar lordosis (radians)
    sacral_slope: float  # radians from horizontal
    bone_density: float  # trabecular attenuation (osteoporosis lowers it)
    cortex: float  # cortical rim attenuation
    soft_tissue: float  # soft-tissue attenuation (habitus)
    back_depth: float  # skin behind the spinous processes, in body widths
    morph: Morphology

    @staticmethod
    def sample(rng: np.random.Generator) -> Patient:
        return Patient(
            pitch=rng.uniform(0.135, 0.16),
            aspect=rng.uniform(1.2, 1.5),
            disc_ratio=rng.uniform(0.26, 0.36),
            lordosis=math.radians(rng.uniform(35, 65)),
            sacral_slope=math.radians(rng.uniform(30, 48)),
            bone_density=rng.uniform(0.3, 0.5),
            cortex=rng.uniform(0.25, 0.45),
            soft_tissue=rng.uniform(0.45, 0.9),
            back_depth=rng.uniform(0.9, 2.2),
            morph=Morphology.sample(rng),
        )


@dataclasses.dataclass
class View:
    """Image-level positioning and acquisition of one radiograph of a patient."""

    rows: int
    cols: int
    facing: int  # +1 anterior to the right, -1 to the left
    rotation: float  # in-plane patient rotation (radians)
    shift: tuple[float, float]  # offset of L3 from the nominal anchor, in pixels (x, y)
    zoom: float  # magnification
    flexion: float  # extra lordosis in this exposure (radians)

    @staticmethod
    def sample(rng: np.random.Generator, rows: int, cols: int) -> View:
        return View(
            rows=rows,
            cols=cols,
            facing=int(rng.choice((-1, 1))),
            rotation=math.radians(rng.normal(0.0, 4.0)),
            shift=(rng.normal(0.0, 0.04) * cols, rng.normal(0.0, 0.04) * rows),
            zoom=rng.uniform(0.88, 1.1),
            flexion=math.radians(rng.normal(0.0, 5.0)),
        )


@dataclasses.dataclass(frozen=True)
class Frame:
    """A vertebra's local frame: origin (body centre), anterior unit vector n, caudal unit vector d."""

    cx: float
    cy: float
    nx: float
    ny: float
    dx: float
    dy: float

    def to_xy(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
        return self.cx + u * self.nx + v * self.dx, self.cy + u * self.ny + v * self.dy


@dataclasses.dataclass(frozen=True)
class Vertebra:
    """One vertebra in pixel space: frame, body size (posterior height h, AP depth w) and wedging."""

    level: str
    frame: Frame
    width: float
    height: float
    wedge: float
    sacrum: bool

    def half_height(self, u: np.ndarray) -> np.ndarray:
        """Half body height at anterior coordinate u: the anterior wall loses ``wedge`` of its height."""
        t = np.clip(u / self.width + 0.5, 0.0, 1.0)
        return 0.5 * self.height * (1.0 - self.wedge * t)

    def corners(self) -> np.ndarray:
        """Body corners [4, 2] in pixels: posterior-superior, anterior-superior, then inferior anterior, posterior."""
        hw = 0.5 * self.width
        u = np.array([-hw, hw, hw, -hw])
        hh = self.half_height(u)
        v = np.array([-hh[0], -hh[1], hh[2], hh[3]])
        return np.stack(self.frame.to_xy(u, v), axis=1)


@dataclasses.dataclass(frozen=True)
class Spine:
    vertebrae: tuple[Vertebra, ...]
    disc_heights: tuple[float, ...]  # [NUM_GAPS] in pixels
    unit: float  # nominal body height in pixels (sizes lesions and shapes)


def _axis_angles(patient: Patient, view: View) -> np.ndarray:
    """Angle of each vertebra's caudal axis from vertical, positive = tilted so it runs anteriorly."""
    lordosis = patient.lordosis + view.flexion
    angles = np.empty(len(LEVELS))
    angles[SACRUM] = -(math.pi / 2 - patient.sacral_slope) * 0.55
    for g in range(NUM_GAPS - 1, -1, -1):
        angles[g] = angles[g + 1] + lordosis * _GAP_LORDOSIS[g]
    return angles


def layout_spine(patient: Patient, view: View) -> Spine:
    """Place every vertebra: stack bodies and discs along the lordotic curve, then slip, rotate, shift."""
    morph = patient.morph
    unit = view.rows * patient.pitch * view.zoom / (1.0 + patient.disc_ratio)
    heights = unit * morph.height_scale * np.linspace(0.92, 1.06, len(LEVELS))
    heights[SACRUM] *= 2.2
    widths = unit * patient.aspect * np.linspace(0.95, 1.1, len(LEVELS))
    discs = unit * patient.disc_ratio * morph.disc_scale * np.linspace(0.8, 1.1, NUM_GAPS)
    angles = _axis_angles(patient, view)
    f = view.facing
    centers = np.zeros((len(LEVELS), 2))
    for k in range(1, len(LEVELS)):
        mean_angle = 0.5 * (angles[k - 1] + angles[k])
        step = 0.5 * heights[k - 1] * (1 - 0.5 * morph.wedge[k - 1]) + discs[k - 1] + 0.5 * heights[k]
        centers[k] = centers[k - 1] + step * np.array([f * math.sin(mean_angle), math.cos(mean_angle)])
    # A slip of vertebra k moves it and everything above it anteriorly, along k's anterior axis.
    for k in range(len(LEVELS) - 1):
        shift = morph.slip[k] * widths[k] * np.array([f * math.cos(angles[k]), -math.sin(angles[k])])
        centers[: k + 1] += shift
    anchor = np.array([0.5 * view.cols + f * 0.1 * view.cols + view.shift[0], 0.52 * view.rows + view.shift[1]])
    c, s = math.cos(view.rotation), math.sin(view.rotation)
    rot = np.array([[c, -s], [s, c]])
    centers = (centers - centers[LEVELS.index("L3")]) @ rot.T + anchor
    vertebrae = []
    for k, level in enumerate(LEVELS):
        n = rot @ np.array([f * math.cos(angles[k]), -math.sin(angles[k])])
        d = rot @ np.array([f * math.sin(angles[k]), math.cos(angles[k])])
        frame = Frame(float(centers[k, 0]), float(centers[k, 1]), float(n[0]), float(n[1]), float(d[0]), float(d[1]))
        vertebrae.append(
            Vertebra(
                level,
                frame,
                float(widths[k]),
                float(heights[k]),
                float(np.clip(morph.wedge[k], -0.2, 0.8)),
                k == SACRUM,
            )
        )
    return Spine(tuple(vertebrae), tuple(float(x) for x in discs), float(unit))


def rounded_box_sdf(
    u: np.ndarray, v: np.ndarray, half_u: float | np.ndarray, half_v: float | np.ndarray, radius: float
) -> np.ndarray:
    """Signed distance to a rounded rectangle centred at the origin (negative inside)."""
    qu = np.abs(u) - half_u + radius
    qv = np.abs(v) - half_v + radius
    outside = np.sqrt(np.maximum(qu, 0.0) ** 2 + np.maximum(qv, 0.0) ** 2)
    return outside + np.minimum(np.maximum(qu, qv), 0.0) - radius


def ellipse_sdf(u: np.ndarray, v: np.ndarray, a: float, b: float) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipse with semi-axes a (u) and b (v)."""
    return (np.sqrt((u / a) ** 2 + (v / b) ** 2) - 1.0) * min(a, b)


def segment_sdf(
    u: np.ndarray, v: np.ndarray, p0: tuple[float, float], p1: tuple[float, float], half_thickness: float
) -> np.ndarray:
    """Signed distance to a capsule (thick segment) from p0 to p1."""
    du, dv = p1[0] - p0[0], p1[1] - p0[1]
    t = np.clip(((u - p0[0]) * du + (v - p0[1]) * dv) / max(du * du + dv * dv, 1e-9), 0.0, 1.0)
    return np.hypot(u - p0[0] - t * du, v - p0[1] - t * dv) - half_thickness


def soft_inside(sdf: np.ndarray, edge: float) -> np.ndarray:
    """Smooth indicator of the inside of a shape; ``edge`` is the blur width in pixels."""
    return 0.5 - 0.5 * np.tanh(sdf / max(edge, 1e-3))


class Canvas:
    """Accumulates attenuation (line integrals) on an image grid."""

    def __init__(self, rows: int, cols: int):
        self.mu = np.zeros((rows, cols), np.float32)
        self.ys = np.arange(rows, dtype=np.float32)[:, None]
        self.xs = np.arange(cols, dtype=np.float32)[None, :]

    def window(self, frame: Frame, center: tuple[float, float], radius: float):
        """Pixel window around local point ``center`` and the local (u, v) grids on it; None if off-image."""
        x, y = frame.to_xy(center[0], center[1])
        rows, cols = self.mu.shape
        r0, r1 = max(int(y - radius), 0), min(int(y + radius) + 2, rows)
        c0, c1 = max(int(x - radius), 0), min(int(x + radius) + 2, cols)
        if r0 >= r1 or c0 >= c1:
            return None
        px = self.xs[:, c0:c1] - frame.cx
        py = self.ys[r0:r1] - frame.cy
        u = px * frame.nx + py * frame.ny
        v = px * frame.dx + py * frame.dy
        return (slice(r0, r1), slice(c0, c1)), u, v

    def stamp(self, frame: Frame, center: tuple[float, float], radius: float, density) -> None:
        """Add ``density(u, v)`` (a callable on local grids) to the pixels within ``radius`` of ``center``."""
        got = self.window(frame, center, radius)
        if got is not None:
            sl, u, v = got
            self.mu[sl] += density(u, v).astype(np.float32)

    def add_box(
        self,
        frame: Frame,
        center: tuple[float, float],
        half: tuple[float, float],
        density: float,
        edge: float,
        corner: float,
    ) -> None:
        """A uniform rounded rectangle (half sizes ``half``, corner radius ``corner``) in local coordinates."""
        (cu, cv), (hu, hv) = center, half
        self.stamp(
            frame,
            center,
            math.hypot(hu, hv) + 3,
            lambda u, v: density * soft_inside(rounded_box_sdf(u - cu, v - cv, hu, hv, corner), edge),
        )

    def add_ellipse(
        self, frame: Frame, center: tuple[float, float], axes: tuple[float, float], density: float, edge: float
    ) -> None:
        """A uniform ellipse with semi-axes ``axes`` (along u, v) in local coordinates."""
        (cu, cv), (a, b) = center, axes
        self.stamp(
            frame, center, max(a, b) + 3, lambda u, v: density * soft_inside(ellipse_sdf(u - cu, v - cv, a, b), edge)
        )

    def add_capsule(
        self, frame: Frame, p0: tuple[float, float], p1: tuple[float, float], half: float, density: float, edge: float
    ) -> None:
        """A uniform thick segment from p0 to p1 (half thickness ``half``) in local coordinates."""
        center = (0.5 * (p0[0] + p1[0]), 0.5 * (p0[1] + p1[1]))
        radius = 0.5 * math.hypot(p1[0] - p0[0], p1[1] - p0[1]) + half + 3
        self.stamp(frame, center, radius, lambda u, v: density * soft_inside(segment_sdf(u, v, p0, p1, half), edge))


def trabecular_texture(rng: np.random.Generator, rows: int, cols: int, unit: float) -> np.ndarray:
    """Band-limited noise with vertical grain (mean 1) that modulates the density of cancellous bone."""
    scale = max(unit / 40.0, 0.35)
    field = scipy.ndimage.gaussian_filter(
        rng.standard_normal((rows, cols), np.float32), sigma=(1.6 * scale, 0.7 * scale)
    )
    field /= max(float(field.std()), 1e-6)
    return 1.0 + 0.22 * field


def draw_vertebra(canvas: Canvas, vert: Vertebra, patient: Patient, texture: np.ndarray, edge: float) -> None:
    """Vertebral body (cancellous core with cortical rim) and, for lumbar levels, its posterior elements."""
    w, h = vert.width, vert.height
    rim = 0.07 * h if not vert.sacrum else 0.05 * h
    taper = 0.35 if vert.sacrum else 0.0

    def body(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        half_u = 0.5 * w * (1.0 - taper * np.clip(v / h + 0.5, 0.0, 1.0))
        half_u = half_u - 0.03 * w * (1.0 - (2.0 * v / h) ** 2).clip(0.0)  # concave anterior wall
        half_v = vert.half_height(u) - 0.04 * h * (1.0 - (2.0 * u / w) ** 2).clip(0.0)  # concave endplates
        sdf = rounded_box_sdf(u, v, half_u, half_v, 0.12 * h)
        core = soft_inside(sdf, edge) * patient.bone_density
        cortex = patient.cortex * np.exp(-(((sdf + rim) / rim) ** 2))
        return core + cortex

    got = canvas.window(vert.frame, (0.0, 0.0), 0.75 * math.hypot(w, h) + 2)
    if got is not None:
        sl, u, v = got
        canvas.mu[sl] += body(u, v) * texture[sl]
    if not vert.sacrum:
        draw_posterior_elements(canvas, vert, patient, edge)
    else:
        canvas.add_box(
            vert.frame, (-0.78 * w, -0.05 * h), (0.1 * w, 0.35 * h), 0.5 * patient.bone_density, edge, 0.05 * h
        )  # median sacral crest


def posterior_parts(vert: Vertebra) -> list[tuple[tuple[float, float], tuple[float, float], float]]:
    """(centre (u, v), half sizes (u, v), relative density) of pedicle, articular pillar and spinous process."""
    w, h = vert.width, vert.height
    return [
        ((-0.5 * w - 0.18 * w, -0.26 * h), (0.22 * w, 0.2 * h), 0.75),  # pedicle
        ((-0.5 * w - 0.5 * w, 0.05 * h), (0.13 * w, 0.55 * h), 0.9),  # articular pillar / lamina
        ((-0.5 * w - 0.95 * w, 0.2 * h), (0.32 * w, 0.2 * h), 0.6),
    ]  # spinous process


def draw_posterior_elements(canvas: Canvas, vert: Vertebra, patient: Patient, edge: float) -> None:
    for (cu, cv), (hu, hv), rel in posterior_parts(vert):
        canvas.add_box(
            vert.frame,
            (cu, cv),
            (hu, hv),
            rel * (patient.bone_density + 0.4 * patient.cortex),
            edge,
            0.45 * min(hu, hv),
        )


def foramen(spine: Spine, gap: int) -> tuple[Frame, tuple[float, float], tuple[float, float]]:
    """The intervertebral foramen behind gap ``gap``: frame of the upper vertebra, centre and half sizes."""
    upper = spine.vertebrae[gap]
    w, h = upper.width, upper.height
    d = spine.disc_heights[gap]
    top, bottom = -0.06 * h, 0.5 * h + d + 0.04 * h
    return upper.frame, (-0.5 * w - 0.2 * w, 0.5 * (top + bottom)), (0.17 * w, 0.5 * (bottom - top))


def draw_soft_tissue(canvas: Canvas, spine: Spine, patient: Patient, rng: np.random.Generator) -> None:
    """Body outline (skin behind the back, air beyond), iliac crest and bowel gas."""
    l3 = spine.vertebrae[LEVELS.index("L3")]
    f = l3.frame
    u = (canvas.xs - f.cx) * f.nx + (canvas.ys - f.cy) * f.ny
    back = -(0.5 + 1.45 + patient.back_depth) * l3.width
    front = (0.5 + rng.uniform(1.2, 4.0)) * l3.width
    inside = soft_inside(back - u, 0.06 * spine.unit + 1.0) * soft_inside(u - front, 2.0)
    thickness = 0.75 + 0.25 * np.clip((u - back) / (front - back), 0, 1)
    canvas.mu += (patient.soft_tissue * inside * thickness).astype(np.float32)
    pelvis = spine.vertebrae[SACRUM].frame
    crest_r = rng.uniform(2.2, 3.0) * l3.width
    center = (rng.uniform(-0.3, 0.5) * l3.width, rng.uniform(0.6, 1.4) * l3.height + crest_r)

    def iliac_rim(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return 0.12 * np.exp(-(((np.hypot(u - center[0], v - center[1]) - crest_r) / (0.06 * crest_r)) ** 2))

    canvas.add_ellipse(pelvis, center, (crest_r, crest_r), 0.12, 2.0)
    canvas.stamp(pelvis, center, crest_r * 1.1, iliac_rim)
    for _ in range(int(rng.integers(0, 6))):  # bowel gas in front of the spine
        gas_center = (rng.uniform(0.9, 2.6) * l3.width, rng.uniform(-2.5, 2.5) * l3.height)
        axes = (rng.uniform(0.15, 0.5) * l3.width, rng.uniform(0.12, 0.4) * l3.width)
        canvas.add_ellipse(f, gas_center, axes, -0.25 * patient.soft_tissue, 2.0)


def draw_anatomy(canvas: Canvas, spine: Spine, patient: Patient, rng: np.random.Generator, edge: float) -> None:
    draw_soft_tissue(canvas, spine, patient, rng)
    texture = trabecular_texture(rng, *canvas.mu.shape, spine.unit)
    for vert in spine.vertebrae:
        draw_vertebra(canvas, vert, patient, texture, edge)

"""One phantom radiograph: a study (patient plus lesions) seen through one acquisition.

The study is shared by the images of a study; each image draws its own positioning and
acquisition (magnification, exposure, blur, quantum noise, collimation), so two images of a study
show the same lesions at different places and with different noise. The result is a 12-bit
display image (bone bright) and the lesion boxes.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.ndimage

from spine.phantom.anatomy import Canvas, Patient, View, draw_anatomy, layout_spine
from spine.phantom.lesions import Box, Lesion, apply_to_morphology, draw_lesions, sample_lesions

NORMAL_FRACTION = 0.6
MAX_STORED = 4095  # 12 bits stored
UNEXPOSED = 4.0  # attenuation behind the collimator blades
ASPECTS = (1.0, 1.2, 1.25, 1.33)  # rows / cols: portrait detectors


@dataclasses.dataclass(frozen=True)
class Difficulty:
    """How hard the phantom is: the range of lesion severities and the quantum noise at full exposure."""

    severity_range: tuple[float, float]
    noise: float
    lesion_scale: float = 1.0  # size multiplier of the drawn (overlay) lesions; 1 = the calibrated phantom
    zoom: float = 1.0  # magnification of every image on top of its own; 1 = the calibrated field of view

    @staticmethod
    def from_level(level: float, lesion_scale: float = 1.0, zoom: float = 1.0) -> Difficulty:
        """Map a difficulty level in [0, 1] (and a lesion size multiplier) to its parameters.

        Level 0 gives textbook lesions (severity 0.8-1) on clean images; raising the level lowers the
        strongest severity and widens the spread towards subtle lesions, and adds noise. ``lesion_scale``
        above 1 draws spurs, spots and metal larger, for images used at low resolution. ``zoom`` above 1 narrows
        the field of view (about seven vertebral levels at 1, five at 1.5), so that every structure, lesions
        included, covers more pixels.
        """
        if not 0.0 <= level <= 1.0:
            raise ValueError(f"difficulty must be in [0, 1], got {level}")
        if not 0.25 <= lesion_scale <= 4.0:
            raise ValueError(f"lesion_scale must be in [0.25, 4], got {lesion_scale}")
        if not 0.5 <= zoom <= 2.0:
            raise ValueError(f"zoom must be in [0.5, 2], got {zoom}")
        strongest = 1.0 - 0.75 * level
        return Difficulty(
            severity_range=(strongest * (0.8 - 0.5 * level), strongest),
            noise=0.01 + 0.05 * level,
            lesion_scale=lesion_scale,
            zoom=zoom,
        )


@dataclasses.dataclass(frozen=True)
class Study:
    """Study-level draw: the patient's anatomy and findings."""

    patient: Patient
    lesions: tuple[Lesion, ...]

    @staticmethod
    def sample(rng: np.random.Generator, difficulty: Difficulty) -> Study:
        patient = Patient.sample(rng)
        abnormal = bool(rng.random() >= NORMAL_FRACTION)
        return Study(patient, sample_lesions(rng, abnormal, difficulty.severity_range))


def image_shape(rng: np.random.Generator, size: int) -> tuple[int, int]:
    """(rows, cols) of one image: ``size`` columns and a portrait aspect ratio drawn per image."""
    return int(round(size * float(rng.choice(ASPECTS)))), size


def _collimate(mu: np.ndarray, rng: np.random.Generator) -> None:
    """Sometimes the collimator blades leave unexposed (bright) margins on some sides."""
    if rng.random() >= 0.25:
        return
    rows, cols = mu.shape
    top, bottom, left, right = (rng.random(4) < 0.5) * rng.uniform(0.02, 0.08, 4)
    mu[: int(top * rows)] = UNEXPOSED
    mu[rows - int(bottom * rows) :] = UNEXPOSED
    mu[:, : int(left * cols)] = UNEXPOSED
    mu[:, cols - int(right * cols) :] = UNEXPOSED


def _expose(mu: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """Detector signal with quantum noise, log-converted and tone-mapped to 12-bit display values."""
    transmitted = np.exp(-mu)
    dose = rng.uniform(0.6, 1.6)  # relative exposure: less dose, more noise
    sigma = np.float32(noise / np.sqrt(dose))
    noisy = transmitted + sigma * np.sqrt(transmitted + np.float32(1e-3)) * rng.standard_normal(mu.shape, np.float32)
    # tone = 1 - exp(-g * density) with density = -log(noisy), i.e. 1 - noisy ** g
    tone = 1.0 - np.clip(noisy, 1e-3, None) ** np.float32(rng.uniform(0.8, 1.4))
    lo, hi = rng.uniform(0, 300), rng.uniform(1800, MAX_STORED)
    return np.clip(np.rint(lo + (hi - lo) * tone), 0, MAX_STORED).astype(np.uint16)


def render_image(
    study: Study, rng: np.random.Generator, size: int, difficulty: Difficulty
) -> tuple[np.ndarray, list[tuple[str, Box]]]:
    """Render one radiograph of ``study``: uint16 [rows, cols] in 0..4095 (bone bright), and (class, box) findings."""
    rows, cols = image_shape(rng, size)
    patient = dataclasses.replace(study.patient, morph=apply_to_morphology(study.lesions, study.patient.morph))
    view = View.sample(rng, rows, cols)
    spine = layout_spine(patient, dataclasses.replace(view, zoom=view.zoom * difficulty.zoom))
    canvas = Canvas(rows, cols)
    edge = 0.6
    draw_anatomy(canvas, spine, patient, rng, edge)
    findings = draw_lesions(canvas, spine, patient, study.lesions, edge, difficulty.lesion_scale)
    mu = scipy.ndimage.gaussian_filter(canvas.mu, sigma=rng.uniform(0.4, 1.1) * size / 256)
    _collimate(mu, rng)
    return _expose(mu, rng, difficulty.noise), findings

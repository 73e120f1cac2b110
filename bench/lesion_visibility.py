"""How visible is each phantom lesion type at the working resolution?

For each lesion type, 30 seeded patients are rendered twice with the same acquisition (same rng): without and
with the lesion (severity = the difficulty level's strongest), both centre-cropped to a square and resized to
32x32 like the importer (12-bit values to 0-255, Lanczos); prints the mean over patients of the largest pixel
difference and of the number of pixels that change by more than 8 grey levels. Geometric lesions (disc
narrowing, collapse, slips) move the column above them, so their counts include that shift.

    python bench/lesion_visibility.py --lesion-scale 1 --lesion-scale 2
"""

from __future__ import annotations

import click
import numpy as np
import PIL.Image

from spine.phantom.anatomy import Patient
from spine.phantom.image import Difficulty, Study, render_image
from spine.phantom.lesions import CLASS_WEIGHTS, Lesion

SITES = {"Spondylolysthesis": 5, "Surgical implant": 4}  # the lesions' usual levels; others at L3 / L3-L4


def to_32(pixels: np.ndarray) -> np.ndarray:
    """12-bit portrait image -> centre square -> 32x32 float grey levels (0-255)."""
    h, w = pixels.shape
    top = (h - w) // 2
    square = (pixels[top : top + w].astype(np.float32) / 4095 * 255).astype(np.uint8)
    return np.asarray(PIL.Image.fromarray(square).resize((32, 32), PIL.Image.LANCZOS), np.float32)


@click.command()
@click.option("--lesion-scale", "scales", type=float, multiple=True, default=(1.0,), show_default=True)
@click.option("--difficulty", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--patients", type=click.IntRange(min=1), default=30, show_default=True)
def main(scales: tuple[float, ...], difficulty: float, patients: int) -> None:
    """Per lesion type: pixels of the 32x32 image that the lesion changes."""
    for scale in scales:
        level = Difficulty.from_level(difficulty, scale)
        click.echo(f"lesion_scale {scale}, difficulty {difficulty}:")
        for kind in CLASS_WEIGHTS:
            rows = []
            for i in range(patients):
                rng = np.random.default_rng(i)
                patient = Patient.sample(rng)
                lesion = Lesion(
                    kind, SITES.get(kind, 4), level.severity_range[1], tuple(float(x) for x in rng.random(6))
                )
                plain, _ = render_image(Study(patient, ()), np.random.default_rng(100 + i), 128, level)
                sick, _ = render_image(Study(patient, (lesion,)), np.random.default_rng(100 + i), 128, level)
                diff = np.abs(to_32(sick) - to_32(plain))
                rows.append((diff.max(), (diff > 8).sum()))
            mean = np.mean(rows, axis=0)
            click.echo(f"  {kind:22s} max |difference| {mean[0]:6.1f}   pixels changed by > 8: {mean[1]:6.1f}")


if __name__ == "__main__":
    main()  # pylint: disable=no-value-for-parameter

"""A PNG grid of dataset examples, one row per class, to eyeball labels and preprocessing.

python -m spine.data.preview datasets/spine256.zip --out spine256.png
"""

from __future__ import annotations

import click
import numpy as np
import PIL.Image
import PIL.ImageDraw

import dnnlib
from training.dataset import ImageFolderDataset

_MARGIN = 180  # width of the class-name column, pixels


def preview_rows(dataset: ImageFolderDataset, per_class: int, seed: int = 0) -> list[tuple[str, list[int]]]:
    """(row name, dataset indices) per class; a seeded sample of at most `per_class` images each."""
    names = dataset.metadata.get("class_names") or []
    if not dataset.has_labels:
        groups = [("all images", np.arange(len(dataset)))]
    else:
        labels = np.stack([dataset.get_label(i) for i in range(len(dataset))])
        groups = [(name, np.flatnonzero(labels[:, k] > 0)) for k, name in enumerate(names)]
        if not dataset.has_onehot_labels:
            groups.append(("no lesion", np.flatnonzero(labels.sum(axis=1) == 0)))
    rng = np.random.default_rng(seed)
    return [(name, sorted(rng.permutation(idx)[:per_class].tolist())) for name, idx in groups]


def class_counts(dataset: ImageFolderDataset) -> dict[str, int]:
    """Images per row of the preview (positives per class for multi-label datasets)."""
    return {name: len(idx) for name, idx in preview_rows(dataset, per_class=len(dataset))}


def tile(image: np.ndarray, cell: int) -> PIL.Image.Image:
    """CHW uint8 -> a gray `cell` x `cell` tile (box filter: whole pixels when enlarged, averages when reduced)."""
    return PIL.Image.fromarray(image.mean(axis=0).astype(np.uint8), "L").resize((cell, cell), PIL.Image.BOX)


def render_grid(
    dataset: ImageFolderDataset, rows: list[tuple[str, list[int]]], per_class: int, cell: int, names_column: bool = True
) -> PIL.Image.Image:
    """One row of tiles per (name, dataset indices); with `names_column`, the row names on the left."""
    margin = _MARGIN if names_column else 0
    grid = PIL.Image.new("L", (margin + per_class * cell, max(len(rows), 1) * cell), color=0)
    draw = PIL.ImageDraw.Draw(grid)
    for r, (name, indices) in enumerate(rows):
        if names_column:
            draw.text((4, r * cell + cell // 2 - 6), f"{name} ({len(indices)} shown)", fill=255)
        for c, idx in enumerate(indices):
            grid.paste(tile(dataset[idx][0], cell), (margin + c * cell, r * cell))
    return grid


def write_preview(
    dataset_path: str, out_path: str, per_class: int = 8, cell: int = 128, seed: int = 0
) -> dict[str, int]:
    """Write the grid PNG atomically, print and return the class counts."""
    dataset = ImageFolderDataset(dataset_path)
    if dataset.metadata.get("label_mode", "none") != "none":
        dataset.close()
        dataset = ImageFolderDataset(dataset_path, use_labels=True)
    rows = preview_rows(dataset, per_class, seed)
    with dnnlib.atomic_write(out_path, "wb") as f:
        render_grid(dataset, rows, per_class, cell).save(f, format="png")
    counts = class_counts(dataset)
    click.echo("Class counts: " + ", ".join(f"{name} {n}" for name, n in counts.items()))
    dataset.close()
    return counts


@click.command()
@click.argument("dataset", type=click.Path(exists=True))
@click.option("--out", required=True, type=dnnlib.OutputPath(dir_okay=False), help="Output PNG")
@click.option("--per-class", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--seed", type=dnnlib.SEED, default=0, show_default=True)
def main(dataset: str, out: str, per_class: int, seed: int) -> None:
    """Write a preview grid of a training dataset, one row per class."""
    write_preview(dataset, out, per_class=per_class, seed=seed)


if __name__ == "__main__":
    main()  # pylint: disable=no-value-for-parameter

"""Turn VinDr-SpineXR DICOMs (or a plain folder of DICOM/PNG images) into a training dataset.

    python -m spine.data.dataset_tool --source=/data/vindr-spinexr --dest=datasets/spine256.zip \\
        --resolution=256 --labels=abnormality --preview=spine256.png

Output: the official layout (``00000/img00000000.png`` ... plus dataset.json with "labels") and a
"spinegan" block: label mode, class names and counts, per-file image_id/study_id/split, skipped files
with the reason, and the tool options (docs/CONTRACTS.md). No DICOM tag value is copied: only pixels
and the CSV's anonymised image and study ids leave the source.

Label options (see spine.data.labels): --labels abnormality|lesion|multilabel|none (default: abnormality
for a VinDr root, none for a plain folder), --multi-lesion drop (paper, default)|most-frequent|
first-by-priority, --rare drop (paper, default)|other|keep, --consensus any (default)|all.
The paper's preprocessing is --transform=center-crop --resize-filter=nearest --resolution=256.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import multiprocessing
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import click
import numpy as np
import PIL.Image
import tqdm

import dnnlib
from dnnlib import UserError
from spine.data import labels as labels_mod
from spine.data import splits
from spine.data.dicom import DICOM_SUFFIXES, DecodeError, decode_image, is_dicom_file

_PLAIN_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
RESIZE_FILTERS = {"nearest": PIL.Image.NEAREST, "box": PIL.Image.BOX, "lanczos": PIL.Image.LANCZOS}


@dataclasses.dataclass(frozen=True)
class SourceItem:
    """One source image and what the dataset will record about it."""

    path: str
    image_id: str
    study_id: str | None
    label: labels_mod.Label
    split: str


@dataclasses.dataclass(frozen=True)
class ImageOptions:
    resolution: int
    transform: str
    resize_filter: str


@dataclasses.dataclass
class SourceListing:
    items: list[SourceItem]
    label_mode: str
    class_names: list[str]
    excluded: dict[str, int]


# --- source listing ------------------------------------------------------------------------------


def is_vindr_root(source: str) -> bool:
    return os.path.isdir(os.path.join(source, "annotations"))


def list_vindr(source: str, split: str, spec: labels_mod.LabelSpec) -> SourceListing:
    """Images of one VinDr split with their labels; images the label rules leave out are counted."""
    csv_path = os.path.join(source, "annotations", f"{split}.csv")
    image_dir = os.path.join(source, f"{split}_images")
    if not os.path.isfile(csv_path):
        raise UserError(f"--source: {csv_path} not found (expected a VinDr root with annotations/{split}.csv)")
    if not os.path.isdir(image_dir):
        raise UserError(f"--source: {image_dir} not found (expected a VinDr root with {split}_images/)")
    try:
        annotations = labels_mod.read_annotations(csv_path)
    except labels_mod.AnnotationError as exc:
        raise UserError(str(exc)) from exc
    kept, excluded = labels_mod.make_labels(annotations.values(), spec)
    items = [
        SourceItem(os.path.join(image_dir, f"{img.image_id}.dicom"), img.image_id, img.study_id, img.label, split)
        for img in kept
    ]
    return SourceListing(items, spec.mode, labels_mod.class_names(spec), dict(excluded))


def list_plain_folder(source: str) -> SourceListing:
    """Every DICOM or image file under `source`; the image id is the relative path without suffix.

    File names are copied into dataset.json as image ids, so they must not carry patient data.
    """
    paths = sorted(os.path.join(root, f) for root, _dirs, files in os.walk(source) for f in files)
    paths = [
        p
        for p in paths
        if p.lower().endswith(_PLAIN_IMAGE_SUFFIXES + DICOM_SUFFIXES)
        or (not os.path.splitext(p)[1] and is_dicom_file(p))
    ]
    if not paths:
        raise UserError(f"--source: no DICOM or image files found under {source}")
    items = [
        SourceItem(p, os.path.splitext(os.path.relpath(p, source))[0].replace(os.sep, "/"), None, None, "train")
        for p in paths
    ]
    return SourceListing(items, "none", [], {})


def select_items(
    items: Sequence[SourceItem], val_fraction: float, part: str, seed: int, max_images: int | None
) -> list[SourceItem]:
    """Keep one side of the study-level split (all items when val_fraction is 0), then the first max_images."""
    chosen = list(items)
    if val_fraction > 0:
        train, val = splits.split_by_study([i.study_id for i in items], [i.label for i in items], val_fraction, seed)
        chosen = (
            [dataclasses.replace(items[k], split="val") for k in val] if part == "val" else [items[k] for k in train]
        )
    return chosen[:max_images] if max_images is not None else chosen


# --- pixels --------------------------------------------------------------------------------------


def transform_image(image: np.ndarray, opts: ImageOptions) -> np.ndarray:
    """uint8 [H, W] -> uint8 [R, R]: centre crop (paper) or zero-pad to square, then resize."""
    h, w = image.shape
    side = min(h, w) if opts.transform == "center-crop" else max(h, w)
    if opts.transform == "center-crop":
        top, left = (h - side) // 2, (w - side) // 2
        square = image[top : top + side, left : left + side]
    else:
        square = np.zeros([side, side], dtype=np.uint8)
        top, left = (side - h) // 2, (side - w) // 2
        square[top : top + h, left : left + w] = image
    resized = PIL.Image.fromarray(square, "L").resize(
        (opts.resolution, opts.resolution), RESIZE_FILTERS[opts.resize_filter]
    )
    return np.asarray(resized, dtype=np.uint8)


def encode_item(args: tuple[SourceItem, ImageOptions]) -> tuple[bytes | None, str | None]:
    """Worker: source file -> (PNG bytes, None) or (None, reason it was skipped)."""
    item, opts = args
    if not os.path.isfile(item.path):
        return None, "file not found"
    try:
        pixels = transform_image(decode_image(item.path), opts)
    except DecodeError as exc:
        return None, exc.reason
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels, "L").save(buffer, format="png", compress_level=1)
    return buffer.getvalue(), None


def encode_all(
    items: Sequence[SourceItem], opts: ImageOptions, workers: int
) -> Iterator[tuple[bytes | None, str | None]]:
    """encode_item over every item, in order, in `workers` processes, with a progress bar."""
    jobs = [(item, opts) for item in items]
    bar = dict(total=len(jobs), desc="Importing", unit="img")
    if workers <= 1:
        yield from tqdm.tqdm(map(encode_item, jobs), **bar)
        return
    with multiprocessing.Pool(workers) as pool:
        yield from tqdm.tqdm(pool.imap(encode_item, jobs, chunksize=4), **bar)


# --- destination ---------------------------------------------------------------------------------


def check_dest(dest: str, overwrite: bool = False, flag: str = "--dest") -> None:
    """Refuse to overwrite: a zip must not exist, a folder must be absent or empty. With `overwrite`, an existing
    zip or dataset folder (one with a dataset.json) may be replaced; any other folder stays refused."""
    if dest.lower().endswith(".zip"):
        if os.path.exists(dest) and not (overwrite and os.path.isfile(dest)):
            raise UserError(f"{flag}: {dest} already exists; choose a new zip file name (or --overwrite)")
    elif os.path.exists(dest) and (not os.path.isdir(dest) or os.listdir(dest)):
        if not overwrite:
            raise UserError(f"{flag}: {dest} is not an empty folder; choose a new or empty folder (or --overwrite)")
        if not os.path.isfile(os.path.join(dest, "dataset.json")):
            raise UserError(f"{flag}: {dest} holds no dataset.json; --overwrite replaces only a dataset folder")


@contextlib.contextmanager
def open_dest(dest: str, overwrite: bool = False) -> Iterator[Callable[[str, bytes], None]]:
    """Yield `add(fname, data)`; files go to a temp zip or folder beside `dest` (parents created),
    renamed into place only when the block ends without error, so an interrupted import leaves
    nothing behind. `overwrite` (checked by `check_dest`): a folder at `dest` is replaced whole."""
    if dest.lower().endswith(".zip"):
        with dnnlib.atomic_write(dest, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as archive:
            yield archive.writestr
        return
    parent, name = os.path.split(os.path.abspath(dest))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{name}.", suffix=".tmp")
    try:
        dnnlib.util.apply_default_mode(tmp, directory=True)
        yield functools.partial(_write_file, tmp)
        if overwrite:
            dnnlib.replace_folder(tmp, dest)
        else:
            os.replace(tmp, dest)  # also replaces an empty dest folder in one step; fails on a full one
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_file(root: str, fname: str, data: bytes) -> None:
    path = os.path.join(root, fname)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def image_fname(index: int) -> str:
    return f"{index // 1000:05d}/img{index:08d}.png"


def build_dataset_json(
    written: Sequence[tuple[str, SourceItem]],
    listing: SourceListing,
    skipped: Sequence[dict[str, str]],
    options: dict[str, Any],
) -> dict[str, Any]:
    has_labels = listing.label_mode != "none"
    return {
        "labels": [[fname, item.label] for fname, item in written] if has_labels else None,
        "spinegan": {
            "label_mode": listing.label_mode,
            "class_names": listing.class_names,
            "class_counts": labels_mod.count_classes([i.label for _f, i in written], listing.class_names),
            "num_images": len(written),
            "images": [dict(file=f, image_id=i.image_id, study_id=i.study_id, split=i.split) for f, i in written],
            "excluded_by_labels": listing.excluded,
            "skipped": list(skipped),
            "source": options,
        },
    }


def write_dataset(
    items: Sequence[SourceItem],
    listing: SourceListing,
    dest: str,
    opts: ImageOptions,
    workers: int,
    options: dict[str, Any],
    source_root: str,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Decode, transform and write every item atomically; returns the dataset.json contents."""
    written: list[tuple[str, SourceItem]] = []
    skipped: list[dict[str, str]] = []
    with open_dest(dest, overwrite) as add:
        for item, (png, reason) in zip(items, encode_all(items, opts, workers)):
            if png is None:
                skipped.append(
                    dict(image_id=item.image_id, file=os.path.relpath(item.path, source_root), reason=reason)
                )
                continue
            fname = image_fname(len(written))
            add(fname, png)
            written.append((fname, item))
        if not written:
            raise UserError(
                f"--source: none of the {len(items)} selected images could be decoded "
                f"(first reason: {skipped[0]['reason'] if skipped else 'no images selected'})"
            )
        meta = build_dataset_json(written, listing, skipped, options)
        add("dataset.json", json.dumps(meta, indent=1).encode("utf-8"))
    return meta


# --- command line --------------------------------------------------------------------------------


def _power_of_two(_ctx: click.Context, _param: click.Parameter, value: int) -> int:
    if value < 4 or value & (value - 1):
        raise click.BadParameter(f"{value} is not a power of two (>= 4)")
    return value


def _summary(meta: dict[str, Any], dest: str) -> str:
    block = meta["spinegan"]
    counts = ", ".join(f"{name} {n}" for name, n in block["class_counts"].items()) or "no labels"
    excluded = sum(block["excluded_by_labels"].values())
    return (
        f"Wrote {block['num_images']} images to {dest}; skipped {len(block['skipped'])} undecodable, "
        f"left out {excluded} by label rules; class counts: {counts}"
    )


@click.command()
@click.option("--source", required=True, type=click.Path(), help="VinDr root or folder of images")
@click.option("--dest", required=True, type=dnnlib.OutputPath(), help="Output .zip or empty folder")
@click.option("--split", type=click.Choice(["train", "test"]), default="train", show_default=True)
@click.option("--resolution", type=int, default=256, show_default=True, callback=_power_of_two)
@click.option("--transform", type=click.Choice(["center-crop", "pad"]), default="center-crop", show_default=True)
@click.option("--resize-filter", type=click.Choice(list(RESIZE_FILTERS)), default="lanczos", show_default=True)
@click.option(
    "--labels",
    "label_mode",
    type=click.Choice(labels_mod.LABEL_MODES),
    default=None,
    help="Default: abnormality for a VinDr root, none for a plain folder",
)
@click.option("--multi-lesion", type=click.Choice(labels_mod.MULTI_LESION_POLICIES), default="drop", show_default=True)
@click.option("--rare", type=click.Choice(labels_mod.RARE_POLICIES), default="drop", show_default=True)
@click.option("--consensus", type=click.Choice(labels_mod.CONSENSUS_POLICIES), default="any", show_default=True)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.0,
    show_default=True,
    help="Hold out this fraction of studies (study-level, stratified)",
)
@click.option(
    "--part",
    type=click.Choice(["train", "val"]),
    default="train",
    show_default=True,
    help="Which side of the --val-fraction split to write",
)
@click.option("--seed", type=dnnlib.SEED, default=0, show_default=True, help="Seed of the train/val split")
@click.option("--max-images", type=click.IntRange(min=1), default=None)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--preview", type=dnnlib.OutputPath(dir_okay=False), default=None, help="Write a PNG grid, one row per class"
)
@click.option("--overwrite", is_flag=True, help="Replace --dest if it exists (a zip, or a folder with dataset.json)")
def main(
    source: str,
    dest: str,
    split: str,
    resolution: int,
    transform: str,
    resize_filter: str,
    label_mode: str | None,
    multi_lesion: str,
    rare: str,
    consensus: str,
    val_fraction: float,
    part: str,
    seed: int,
    max_images: int | None,
    workers: int,
    preview: str | None,
    overwrite: bool,
) -> None:
    """Convert spine radiographs into a StyleGAN2-ADA training dataset (zip or folder of PNGs)."""
    options = dict(locals())  # the tool's options, recorded in dataset.json; no patient data
    del options["label_mode"], options["overwrite"]
    if not os.path.isdir(source) or not os.access(source, os.R_OK | os.X_OK):
        raise UserError(f"--source: {source} is not a readable folder")
    check_dest(dest, overwrite)
    dnnlib.remove_stale_temp_files(os.path.dirname(os.path.abspath(dest)))  # of an import killed mid-write
    if is_vindr_root(source):
        spec = labels_mod.LabelSpec(label_mode or "abnormality", multi_lesion, rare, consensus)
        listing = list_vindr(source, split, spec)
    elif label_mode not in (None, "none"):
        raise UserError(f"--labels={label_mode}: {source} is a plain folder without annotations/; use --labels=none")
    else:
        listing = list_plain_folder(source)
    options["labels"] = listing.label_mode
    items = select_items(listing.items, val_fraction, part, seed, max_images)
    opts = ImageOptions(resolution, transform, resize_filter)
    dnnlib.check_free_space(dest, "--dest", len(items) * resolution**2)  # 8-bit gray PNGs, at most about raw
    meta = write_dataset(items, listing, dest, opts, workers, options, source, overwrite)
    for entry in meta["spinegan"]["skipped"]:
        click.echo(f"skipped {entry['file']}: {entry['reason']}", err=True)
    click.echo(_summary(meta, dest))
    if preview:
        from spine.data.preview import write_preview

        write_preview(dest, preview)
        click.echo(f"Preview written to {preview}")


if __name__ == "__main__":
    main()  # pylint: disable=no-value-for-parameter

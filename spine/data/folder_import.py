"""NVIDIA-style import of a folder or zip of images into the training format (the top-level dataset_tool.py).

Unlike the VinDr importer (spine.data.dataset_tool, grey radiographs with labels from the annotation CSVs) this
keeps what the source has: its own dataset.json labels (NVIDIA's {"labels": [[relative path, label], ...]}), RGB
or grey pixels, and refuses to change an image's shape unless asked (--width/--height, --transform). Every change
it makes is said in one line at the end (grey or RGB conversions, crops, pads, resizes, dropped alpha, dropped
images, dropped labels). Sources: a folder (walked recursively) or a zip; files with an image suffix in sorted
order of their relative paths; DICOM files in a folder are decoded to grey (spine.data.dicom).

Transforms (NVIDIA's, plus the VinDr importer's pad):
  none              unchanged, or resized to --width x --height when given (the aspect ratio may change)
  center-crop       the centre square of the short side, resized to --width x --height
  center-crop-wide  a centre crop to the aspect of --width x --height, resized, then padded with black above and
                    below to --width x --width; images narrower than --width or lower than --height are dropped
  pad               black padding to a square, resized to --width x --height
The output must be square with a power-of-two side (4 or more), 1 or 3 channels, the same for every image.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import json
import os
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
import PIL.Image
import tqdm

from dnnlib import UserError
from spine.data.dataset_tool import RESIZE_FILTERS, check_dest, image_fname, open_dest
from spine.data.dicom import DICOM_SUFFIXES, DecodeError, decode_dicom, decode_plain_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm")
TRANSFORMS = ("center-crop", "center-crop-wide", "pad")
_SIXTEEN_BIT = ("I", "I;16", "I;16B", "I;16L", "F")


@dataclasses.dataclass(frozen=True)
class ImportOptions:
    width: int | None
    height: int | None
    transform: str | None
    resize_filter: str
    channels: int | None  # None: the source's own (every image must agree)
    max_images: int | None


@dataclasses.dataclass
class Source:
    """Relative paths (forward slashes, sorted), how to open each, and the labels of the source's dataset.json."""

    names: list[str]
    open: Callable[[str], Any]  # name -> binary file object
    labels: dict[str, Any] | None
    where: str
    close: Callable[[], None] = lambda: None


def open_source(path: str) -> Source:
    """A folder or a zip of images (UserError when it is neither or holds no image)."""
    if os.path.isdir(path):
        names = sorted(
            os.path.relpath(os.path.join(root, f), path).replace(os.sep, "/")
            for root, _dirs, files in os.walk(path)
            for f in files
        )
        opener: Callable[[str], Any] = lambda name: open(os.path.join(path, name), "rb")  # noqa: E731
        close = lambda: None  # noqa: E731
    elif os.path.isfile(path) and zipfile.is_zipfile(path):
        archive = zipfile.ZipFile(path)
        names = sorted(n for n in archive.namelist() if not n.endswith("/"))
        opener, close = archive.open, archive.close
    else:
        raise UserError(f"--source: {path} is not a folder or a zip file")
    try:
        images = [n for n in names if n.lower().endswith(IMAGE_SUFFIXES + DICOM_SUFFIXES)]
        if not images:
            raise UserError(f"--source: no image files found in {path}")
        labels = read_labels(opener, path) if "dataset.json" in names else None
    except UserError:
        close()
        raise
    return Source(images, opener, labels, path, close)


def read_labels(opener: Callable[[str], Any], path: str) -> dict[str, Any] | None:
    """{relative path: label} of the source's dataset.json (None when its labels are null)."""
    with opener("dataset.json") as f:
        try:
            labels = json.load(f).get("labels")
            return {name: label for name, label in labels} if labels is not None else None
        except (ValueError, AttributeError, TypeError) as exc:
            raise UserError(
                f'--source: {path}/dataset.json: expected NVIDIA\'s {{"labels": [[path, label], '
                f"...] or null}} ({type(exc).__name__}: {exc})"
            ) from None


def read_pixels(source: Source, name: str, changes: collections.Counter) -> np.ndarray:
    """uint8 [H, W, C] (C = 1 or 3): grey and RGB as stored, 16-bit grey min-max scaled, DICOM decoded to grey,
    palette images to RGB, the alpha channel dropped (counted in `changes`)."""
    if name.lower().endswith(DICOM_SUFFIXES):
        if not os.path.isdir(source.where):
            raise DecodeError(name, "DICOM files are read from folders only, not from a zip")
        changes["DICOM decoded to grey"] += 1
        return decode_dicom(os.path.join(source.where, name))[:, :, None]
    with source.open(name) as f:
        data = io.BytesIO(f.read())
    try:
        with PIL.Image.open(data) as image:
            image.load()
            if image.mode in _SIXTEEN_BIT:
                changes["16-bit grey scaled to 8 bits (min-max)"] += 1
                return decode_plain_image(data)[:, :, None]
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                changes["alpha channel dropped"] += 1
            target = "L" if image.mode in ("L", "LA", "1") else "RGB"
            pixels = np.asarray(image.convert(target), dtype=np.uint8)
    except (OSError, ValueError, PIL.Image.DecompressionBombError) as exc:
        raise DecodeError(name, f"unreadable image file ({type(exc).__name__})") from exc
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def set_channels(pixels: np.ndarray, channels: int, changes: collections.Counter) -> np.ndarray:
    if pixels.shape[2] == channels:
        return pixels
    if channels == 1:
        changes["RGB converted to grey"] += 1
        return np.asarray(PIL.Image.fromarray(pixels, "RGB").convert("L"))[:, :, None]
    changes["grey repeated to RGB"] += 1
    return np.repeat(pixels, 3, axis=2)


def _resize(
    pixels: np.ndarray, width: int, height: int, opts: ImportOptions, changes: collections.Counter
) -> np.ndarray:
    if pixels.shape[:2] == (height, width):
        return pixels
    changes[f"resized to {width}x{height} ({opts.resize_filter})"] += 1
    image = PIL.Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    out = np.asarray(image.resize((width, height), RESIZE_FILTERS[opts.resize_filter]), dtype=np.uint8)
    return out[:, :, None] if out.ndim == 2 else out


def transform(pixels: np.ndarray, opts: ImportOptions, changes: collections.Counter) -> np.ndarray | None:
    """The image after --transform and --width/--height; None when center-crop-wide drops it."""
    h, w = pixels.shape[:2]
    width, height = opts.width or w, opts.height or h
    if opts.transform is None:
        if (opts.width or opts.height) and h * width != w * height:
            changes["aspect ratio changed by the resize (no --transform)"] += 1
        return _resize(pixels, width, height, opts, changes)
    if opts.transform == "center-crop":
        side = min(h, w)
        if h != w:
            changes["cropped to the centre square"] += 1
        top, left = (h - side) // 2, (w - side) // 2
        return _resize(pixels[top : top + side, left : left + side], width, height, opts, changes)
    if opts.transform == "pad":
        side = max(h, w)
        if h != w:
            changes["padded to a square with black"] += 1
        square = np.zeros([side, side, pixels.shape[2]], np.uint8)
        square[(side - h) // 2 : (side - h) // 2 + h, (side - w) // 2 : (side - w) // 2 + w] = pixels
        return _resize(square, width, height, opts, changes)
    crop_height = int(round(width * h / w))  # center-crop-wide
    if w < width or crop_height < height:
        changes["dropped: too small for center-crop-wide"] += 1
        return None
    top = (h - crop_height) // 2
    strip = _resize(pixels[top : top + crop_height], width, height, opts, changes)
    canvas = np.zeros([width, width, pixels.shape[2]], np.uint8)
    canvas[(width - height) // 2 : (width - height) // 2 + height] = strip
    changes["padded above and below to a square (center-crop-wide)"] += 1
    return canvas


def check_shape(pixels: np.ndarray, first: tuple[int, ...] | None, name: str) -> None:
    h, w, c = pixels.shape
    if h != w or h < 4 or h & (h - 1):
        raise UserError(
            f"--source: {name} becomes {w}x{h}; images must be square with a power-of-two side "
            f"(use --width/--height and --transform to change their shape)"
        )
    if first is not None and pixels.shape != first:
        raise UserError(
            f"--source: {name} becomes {w}x{h}x{c}, the first image {first[1]}x{first[0]}x{first[2]}; "
            f"all images must agree (--width/--height, --transform, --channels)"
        )


def source_channels(source: Source, names: list[str], opts: ImportOptions) -> int:
    """--channels, else the source's own: refused when its images differ (counted by their headers)."""
    if opts.channels is not None:
        return opts.channels
    counts: collections.Counter = collections.Counter()
    for name in names:
        if name.lower().endswith(DICOM_SUFFIXES):
            counts[1] += 1
            continue
        with source.open(name) as f, PIL.Image.open(io.BytesIO(f.read())) as image:
            counts[1 if image.mode in ("L", "LA", "1") + _SIXTEEN_BIT else 3] += 1
    if len(counts) > 1:
        raise UserError(
            f"--source: {counts[1]} grey and {counts[3]} colour images; pass --channels=1 (grey) or "
            f"--channels=3 (RGB) to convert them to one"
        )
    return next(iter(counts))


def convert(
    source: Source, opts: ImportOptions, add: Callable[[str, bytes], None]
) -> tuple[list[tuple[str, str]], collections.Counter]:
    """Write every image through `add(fname, png)`; returns [(source name, written fname)] and the changes made
    (description -> number of images)."""
    names = source.names[: opts.max_images] if opts.max_images else source.names
    channels = source_channels(source, names, opts)
    written: list[tuple[str, str]] = []
    changes: collections.Counter = collections.Counter()
    first_shape: tuple[int, ...] | None = None
    for name in tqdm.tqdm(names, desc="Importing", unit="img"):
        try:
            pixels = transform(set_channels(read_pixels(source, name, changes), channels, changes), opts, changes)
        except DecodeError as exc:
            raise UserError(f"--source: {source.where}/{name}: {exc.reason}") from None
        if pixels is None:
            continue
        check_shape(pixels, first_shape, name)
        first_shape = first_shape or pixels.shape
        buffer = io.BytesIO()
        PIL.Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels).save(buffer, format="png", compress_level=1)
        fname = image_fname(len(written))
        add(fname, buffer.getvalue())
        written.append((name, fname))
    if not written:
        raise UserError(f"--source: none of the {len(names)} images is left to write")
    return written, changes


def dataset_json(written: list[tuple[str, str]], labels: dict[str, Any] | None) -> tuple[dict[str, Any], str | None]:
    """NVIDIA's dataset.json: the source's label of every written image, or null when any lacks one (then the
    second value says so)."""
    if labels is None:
        return {"labels": None}, None
    missing = [name for name, _ in written if name not in labels]
    if missing:
        return {"labels": None}, (
            f"labels dropped: {len(missing)} of {len(written)} images have none in the "
            f"source's dataset.json (first: {missing[0]})"
        )
    return {"labels": [[fname, labels[name]] for name, fname in written]}, None


def import_folder(source_path: str, dest: str, opts: ImportOptions) -> list[str]:
    """Convert `source_path` into `dest` (a new zip or an empty folder), atomically; returns the summary lines."""
    check_dest(dest)
    if opts.transform is not None and (opts.width is None or opts.height is None):
        raise UserError(f"--transform={opts.transform} needs --width and --height")
    if (
        opts.transform == "center-crop-wide"
        and opts.width is not None
        and opts.height is not None
        and opts.height > opts.width
    ):
        raise UserError("--transform=center-crop-wide needs --height <= --width")
    source = open_source(source_path)
    try:
        with open_dest(dest) as add:
            written, changes = convert(source, opts, add)
            meta, dropped = dataset_json(written, source.labels)
            add("dataset.json", json.dumps(meta).encode("utf-8"))
    finally:
        source.close()
    labelled = "with labels" if meta["labels"] is not None else "without labels"
    lines = [f"Wrote {len(written)} images {labelled} to {dest}"]
    lines += [f"  {count} images: {what}" for what, count in sorted(changes.items())]
    return lines + ([f"  {dropped}"] if dropped else [])

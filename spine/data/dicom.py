"""Decoding of radiographs (DICOM or plain image files) to 8-bit grayscale arrays.

DICOM pixels go through the display pipeline of DICOM PS3.3 C.11 so that every image looks the
way a reader would see it, whatever the scanner wrote:
modality LUT (rescale) -> VOI LUT sequence, else window centre/width, else min-max -> MONOCHROME1
inversion (bone bright, as in MONOCHROME2) -> uint8. The paper read ``pixel_array`` raw; VinDr's
own converter applies the VOI LUT and inverts MONOCHROME1, which we follow.

Only pixels leave this module: no tag value (patient name, id, dates, UIDs) is returned.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import PIL.Image
import pydicom
from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing, get_decoder
from pydicom.uid import UID

J2K_PACKAGE = "pylibjpeg-openjpeg"
J2K_HINT = f"install {J2K_PACKAGE} (pip install 'spinegan[jpeg2000]')"
DICOM_SUFFIXES = (".dcm", ".dicom")

# A probe spanning every stored value a file can hold: the output of a VOI function at these two
# inputs is its output range, whatever bit depth, rescale or LUT descriptor the file declares.
_PROBE = np.array([-(2**40), 2**40], dtype=np.int64)


class DecodeError(Exception):
    """A source image cannot be turned into pixels; `reason` says why in one line.

    The reason is our own wording plus the exception type, never the text of a tag value, so it
    can be written into reports without leaking identifying data.
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{os.fspath(path)}: {reason}")
        self.path = os.fspath(path)
        self.reason = reason


def is_dicom_file(path: str | os.PathLike) -> bool:
    """True for a `.dcm`/`.dicom` name or a file with the DICOM preamble magic ("DICM" at 128)."""
    if os.fspath(path).lower().endswith(DICOM_SUFFIXES):
        return True
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def decode_image(path: str | os.PathLike) -> np.ndarray:
    """Any supported source file -> uint8 [H, W] grayscale. Raises DecodeError."""
    if is_dicom_file(path):
        return decode_dicom(path)
    return decode_plain_image(path)


def decode_plain_image(path: str | os.PathLike) -> np.ndarray:
    """PNG/JPEG/TIFF/... -> uint8 [H, W]; 16-bit grayscale is min-max scaled, colour is converted."""
    try:
        with PIL.Image.open(path) as img:
            img.load()
            if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                return _to_uint8(_min_max(np.asarray(img, dtype=np.float64)))
            return np.asarray(img.convert("L"), dtype=np.uint8)
    except (OSError, ValueError, PIL.Image.DecompressionBombError) as exc:
        raise DecodeError(path, f"unreadable image file ({type(exc).__name__})") from exc


def decode_dicom(path: str | os.PathLike) -> np.ndarray:
    """DICOM file -> uint8 [H, W] with bone bright. Raises DecodeError with the reason."""
    ds = _read_dataset(path)
    stored = _stored_pixels(ds, path)
    display = _display_values(stored, ds, path)
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        display = 1.0 - display  # MONOCHROME1 shows low values bright; make bone bright as in MONOCHROME2
    return _to_uint8(display)


def _read_dataset(path: str | os.PathLike) -> pydicom.Dataset:
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:  # pydicom raises many types on damaged files; each is one reason
        raise DecodeError(path, f"unreadable DICOM file ({type(exc).__name__})") from exc
    if "PixelData" not in ds:
        raise DecodeError(path, "DICOM file has no pixel data")
    photometric = ds.get("PhotometricInterpretation")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DecodeError(
            path, f"expected a MONOCHROME1/MONOCHROME2 radiograph, got photometric interpretation {photometric!r}"
        )
    if int(ds.get("NumberOfFrames", 1) or 1) != 1:
        raise DecodeError(path, "expected a single-frame radiograph, got a multi-frame DICOM")
    return ds


def _stored_pixels(ds: pydicom.Dataset, path: str | os.PathLike) -> np.ndarray:
    """Decompressed stored values; a missing decoder names the package that provides one."""
    syntax = UID(ds.file_meta.get("TransferSyntaxUID", ""))
    if syntax.is_compressed:
        decoder = get_decoder(syntax)
        if not decoder.is_available:
            hint = (
                J2K_HINT if "JPEG 2000" in syntax.name else "install one of: " + "; ".join(decoder.missing_dependencies)
            )
            raise DecodeError(path, f"no decoder for {syntax.name}: {hint}")
    try:
        with warnings.catch_warnings():
            # VinDr's J2K streams often declare 16 bits against BitsStored 12; pydicom warns and
            # decodes correctly, and the VOI step below rescales whatever range results.
            warnings.simplefilter("ignore")
            arr = ds.pixel_array
    except Exception as exc:  # truncated or corrupt pixel data: many exception types, one reason
        raise DecodeError(
            path, f"pixel data cannot be decoded, file truncated or corrupt ({type(exc).__name__})"
        ) from exc
    if arr.ndim != 2:
        raise DecodeError(path, f"expected one grayscale frame, got pixel array of shape {arr.shape}")
    return arr


def _display_values(stored: np.ndarray, ds: pydicom.Dataset, path: str | os.PathLike) -> np.ndarray:
    """Stored values -> float64 in [0, 1] through the modality and VOI stages."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = apply_modality_lut(stored, ds)
            if ds.get("VOILUTSequence"):
                return _rescale_by_probe(apply_voi(_as_int(values), ds), apply_voi(_PROBE, ds), values)
            if "WindowCenter" in ds and "WindowWidth" in ds:
                probe = apply_windowing(_PROBE.astype(np.float64), ds)
                return _rescale_by_probe(apply_windowing(values, ds), probe, values)
    except (ValueError, TypeError, NotImplementedError, AttributeError, IndexError) as exc:
        raise DecodeError(path, f"invalid rescale/VOI attributes ({type(exc).__name__})") from exc
    return _min_max(values)


def _as_int(values: np.ndarray) -> np.ndarray:
    """A VOI LUT is indexed by integers; rescaled values are integral in practice."""
    return np.rint(values).astype(np.int64)


def _rescale_by_probe(out: np.ndarray, probe: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Map a VOI output to [0, 1] using the VOI's own output range; a flat VOI falls back to min-max."""
    lo, hi = float(probe[0]), float(probe[1])
    if hi == lo:
        return _min_max(values)
    return np.clip((np.asarray(out, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)


def _min_max(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    lo, hi = float(values.min()), float(values.max())
    if hi == lo:
        return np.zeros_like(values)
    return (values - lo) / (hi - lo)


def _to_uint8(unit: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)

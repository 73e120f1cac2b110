"""Training images: a folder or zip of PNGs plus an optional dataset.json (official layout).

dataset.json holds the official ``"labels": [[file, label], ...]`` (int -> one-hot class, list ->
float vector) and, for datasets written by ``spine.data.dataset_tool``, a ``"spinegan"`` block with the
class names and per-file image/study ids (docs/CONTRACTS.md). Images are uint8, square, a power of
two, with 1 or 3 channels, all alike; a file that breaks this is named in the error.
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any

import numpy as np
import PIL.Image
import torch

import dnnlib

_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_MODE_CHANNELS = {"L": 1, "RGB": 3}


class DatasetError(dnnlib.UserError):
    """The dataset is not in the expected format; the message names the file and what was expected."""


class ImageFolderDataset(torch.utils.data.Dataset):
    """Images with optional labels; `xflip` appends mirrored copies, `max_size` takes a seeded subset."""

    def __init__(
        self,
        path: str,
        resolution: int | None = None,
        max_size: int | None = None,
        use_labels: bool = False,
        xflip: bool = False,
        random_seed: int = 0,
    ) -> None:
        self._path = os.fspath(path)
        self._zipfile: zipfile.ZipFile | None = None
        self._zipfile_pid: int | None = None  # the process that opened _zipfile
        self._type = "dir" if os.path.isdir(self._path) else "zip"
        self._all_fnames = self._list_files()
        self._image_fnames = sorted(f for f in self._all_fnames if f.lower().endswith(_IMAGE_EXTENSIONS))
        if not self._image_fnames:
            raise DatasetError(f"{self._path}: no image files found")
        self.name = os.path.splitext(os.path.basename(self._path.rstrip("/")))[0]
        self._json = self._load_json()
        self._raw_idx = self._select_indices(max_size, random_seed)
        self._xflip = xflip
        self._use_labels = use_labels
        self.image_shape = self._check_first_image(resolution)
        self._onehot = False
        self._labels = self._load_labels() if use_labels else np.zeros([len(self._image_fnames), 0], np.float32)
        self._info = {entry["file"]: entry for entry in self.metadata.get("images", [])}

    # --- file access -----------------------------------------------------------------------------
    def _list_files(self) -> list[str]:
        if self._type == "dir":
            return [
                os.path.relpath(os.path.join(root, f), self._path).replace(os.sep, "/")
                for root, _dirs, files in os.walk(self._path)
                for f in files
            ]
        if not zipfile.is_zipfile(self._path):
            raise DatasetError(f"{self._path}: expected a folder or a zip of images")
        return self._get_zipfile().namelist()

    def _get_zipfile(self) -> zipfile.ZipFile:
        # One handle per process: a forked DataLoader worker inherits the parent's open file, whose read offset
        # the processes would share and move under each other (corrupt reads, "Bad CRC-32"). So a worker
        # opens its own, and leaves the inherited one to the parent.
        if self._zipfile is None or self._zipfile_pid != os.getpid():
            self._zipfile = zipfile.ZipFile(self._path)
            self._zipfile_pid = os.getpid()
        return self._zipfile

    def _open_file(self, fname: str):
        if self._type == "dir":
            return open(os.path.join(self._path, fname), "rb")
        return self._get_zipfile().open(fname, "r")

    def close(self) -> None:
        if self._zipfile is not None and self._zipfile_pid == os.getpid():
            self._zipfile.close()
        self._zipfile = None

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__, _zipfile=None, _zipfile_pid=None)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown may have torn down zipfile already
            pass

    # --- construction checks ---------------------------------------------------------------------
    def _load_json(self) -> dict[str, Any]:
        if "dataset.json" not in self._all_fnames:
            return {}
        with self._open_file("dataset.json") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{self._path}/dataset.json: not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise DatasetError(f"{self._path}/dataset.json: expected an object with a 'labels' key")
        return data

    def _select_indices(self, max_size: int | None, seed: int) -> np.ndarray:
        idx = np.arange(len(self._image_fnames), dtype=np.int64)
        if max_size is not None and max_size < 1:
            raise DatasetError(f"max_size={max_size}: expected at least 1")
        if max_size is not None and max_size < idx.size:
            idx = np.sort(np.random.RandomState(seed).permutation(idx)[:max_size])
        return idx

    def _load_raw_image(self, raw_idx: int) -> np.ndarray:
        fname = self._image_fnames[raw_idx]
        with self._open_file(fname) as f, PIL.Image.open(f) as img:
            if img.mode not in _MODE_CHANNELS:
                raise DatasetError(
                    f"{self._path}/{fname}: image mode {img.mode!r}; expected 8-bit "
                    f"grayscale (L) or RGB (RGBA and palette images are not supported)"
                )
            image = np.array(img, dtype=np.uint8)  # a writable copy: torch warns on read-only arrays
        image = image[:, :, np.newaxis] if image.ndim == 2 else image
        return image.transpose(2, 0, 1)  # HWC -> CHW

    def _check_first_image(self, resolution: int | None) -> list[int]:
        """The shape every image must have, taken from the first file (as the official loader does)."""
        c, h, w = self._load_raw_image(0).shape
        where = f"{self._path}/{self._image_fnames[0]}"
        if h != w:
            raise DatasetError(f"{where}: image is {w}x{h}; expected a square image")
        if h & (h - 1) != 0:
            raise DatasetError(f"{where}: resolution {h} is not a power of two")
        if resolution is not None and h != resolution:
            raise DatasetError(f"{where}: resolution {h}; expected {resolution}")
        return [c, h, w]

    def check_all_images(self) -> None:
        """Refuse the dataset if any selected image differs from the first in size or channels.

        Reads only each file's header. Training reads images lazily and would otherwise stop at the first odd one,
        possibly hours in; tools that create outputs call this first.
        """
        _c, h, w = self.image_shape
        odd = []
        for raw_idx in self._raw_idx:
            fname = self._image_fnames[int(raw_idx)]
            try:
                with self._open_file(fname) as f, PIL.Image.open(f) as img:
                    size, mode = img.size, img.mode
            except OSError as exc:  # includes PIL's UnidentifiedImageError
                raise DatasetError(f"{self._path}/{fname}: not a readable image ({exc})") from None
            if size != (w, h) or _MODE_CHANNELS.get(mode) != self.num_channels:
                odd.append((fname, size, mode))
        if odd:
            fname, (ow, oh), mode = odd[0]
            raise DatasetError(
                f"{self._path}/{fname}: {ow}x{oh} {mode} image; every image must be {w}x{h} with "
                f"{self.num_channels} channel(s) like {self._image_fnames[0]} ({len(odd)} of "
                f"{self._raw_idx.size} images differ)"
            )

    def _load_labels(self) -> np.ndarray:
        entries = self._json.get("labels")
        if entries is None:
            raise DatasetError(
                f"{self._path}: an unlabelled dataset (dataset.json has no labels); expected one label per image"
            )
        by_file = {fname.replace("\\", "/"): label for fname, label in entries}
        missing = [f for f in self._image_fnames if f not in by_file]
        if missing:
            raise DatasetError(
                f"{self._path}/dataset.json: no label for {missing[0]} ({len(missing)} images without a label)"
            )
        labels = [by_file[f] for f in self._image_fnames]
        if all(isinstance(x, int) for x in labels):
            self._onehot = True
            return self._one_hot(np.array(labels, dtype=np.int64))
        if all(isinstance(x, list) for x in labels) and len({len(x) for x in labels}) == 1:
            return np.array(labels, dtype=np.float32).reshape(len(labels), -1)
        raise DatasetError(f"{self._path}/dataset.json: labels must be all integers or all float lists of one length")

    def _one_hot(self, classes: np.ndarray) -> np.ndarray:
        names = self.metadata.get("class_names")
        size = len(names) if names else int(classes.max()) + 1
        if classes.min() < 0 or classes.max() >= size:
            raise DatasetError(f"{self._path}/dataset.json: class index outside [0, {size})")
        onehot = np.zeros([classes.size, size], dtype=np.float32)
        onehot[np.arange(classes.size), classes] = 1
        return onehot

    # --- public interface ------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._raw_idx.size * (2 if self._xflip else 1)

    def _resolve(self, idx: int) -> tuple[int, bool]:
        if not 0 <= idx < len(self):
            raise IndexError(f"index {idx} out of range for dataset of {len(self)} images")
        n = self._raw_idx.size
        return int(self._raw_idx[idx % n]), idx >= n

    def __getitem__(self, idx: int) -> tuple[np.ndarray, np.ndarray]:
        raw_idx, flipped = self._resolve(idx)
        image = self._load_raw_image(raw_idx)
        if list(image.shape) != self.image_shape:
            raise DatasetError(
                f"{self._path}/{self._image_fnames[raw_idx]}: shape {list(image.shape)} "
                f"(CHW) differs from the first image's {self.image_shape}"
            )
        if flipped:
            image = image[:, :, ::-1]
        return np.ascontiguousarray(image), self.get_label(idx)

    def get_label(self, idx: int) -> np.ndarray:
        raw_idx, _ = self._resolve(idx)
        return self._labels[raw_idx].copy()

    def get_details(self, idx: int) -> dnnlib.EasyDict:
        raw_idx, flipped = self._resolve(idx)
        return dnnlib.EasyDict(raw_idx=raw_idx, xflip=flipped, raw_label=self._labels[raw_idx].copy())

    def image_info(self, idx: int) -> dict[str, str | None]:
        """File name plus VinDr image and study ids (None when dataset.json does not say)."""
        raw_idx, _ = self._resolve(idx)
        fname = self._image_fnames[raw_idx]
        entry = self._info.get(fname, {})
        return dict(file=fname, image_id=entry.get("image_id"), study_id=entry.get("study_id"))

    @property
    def metadata(self) -> dict[str, Any]:
        """The `spinegan` block of dataset.json ({} when absent)."""
        return self._json.get("spinegan") or {}

    @property
    def num_channels(self) -> int:
        return self.image_shape[0]

    @property
    def resolution(self) -> int:
        return self.image_shape[1]

    @property
    def label_shape(self) -> list[int]:
        return list(self._labels.shape[1:])

    @property
    def label_dim(self) -> int:
        return self.label_shape[0]

    @property
    def has_labels(self) -> bool:
        return self.label_dim != 0

    @property
    def has_onehot_labels(self) -> bool:
        return self._onehot


def construct_dataset(training_set_kwargs: dict) -> ImageFolderDataset:
    """Build the dataset named by the kwargs (`class_name` is kept in the kwargs for official compatibility)."""
    kwargs = {k: v for k, v in training_set_kwargs.items() if k != "class_name"}
    return ImageFolderDataset(**kwargs)

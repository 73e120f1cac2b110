"""Part of a labelled dataset written as a dataset of its own: image files copied byte for byte, dataset.json keeping
their entries, labels and class names, with a note of where the part came from.

`write_subset` writes any chosen images (spine.data.halves builds on it); `write_classes` keeps the images of some
classes: e.g. the normal studies of another phantom draw, the public images a DP experiment pretrains on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from spine.data.dataset_tool import check_dest, open_dest
from training.dataset import ImageFolderDataset


def class_indices(dataset: ImageFolderDataset) -> list[int]:
    """Each image's class index (one-hot labels)."""
    return [int(np.argmax(dataset.get_label(i))) for i in range(len(dataset))]


def class_names(dataset: ImageFolderDataset) -> list[str]:
    return list(dataset.metadata.get("class_names") or [str(k) for k in range(dataset.label_dim)])


def write_subset(dataset: ImageFolderDataset, dest: str, picks: Sequence[int], note: dict[str, Any]) -> None:
    """Write images `picks` of `dataset` to `dest` (a zip or folder; atomic, never overwritten), `note` stored under
    spinegan in dataset.json beside the kept entries and class counts."""
    check_dest(dest)
    labels = class_indices(dataset)
    files = [dataset.image_info(i)["file"] for i in picks]
    entries = {entry["file"]: entry for entry in dataset.metadata.get("images", [])}
    names = class_names(dataset)
    block = dict(dataset.metadata)
    block.update(
        images=[entries[f] for f in files if f in entries],
        num_images=len(files),
        class_counts=dict(zip(names, np.bincount([labels[i] for i in picks], minlength=len(names)).tolist())),
        **note,
    )
    meta = {"labels": [[f, labels[i]] for f, i in zip(files, picks)], "spinegan": block}
    with open_dest(dest) as add:
        for name in files:
            with dataset._open_file(name) as f:  # pylint: disable=protected-access
                add(name, f.read())
        add("dataset.json", json.dumps(meta, indent=1).encode("utf-8"))


def write_classes(source: str, dest: str, keep: Sequence[str]) -> int:
    """Write the images of `source` whose class is one of `keep` (class names) to `dest`; returns their count. The
    class names stay those of `source`, so a conditional network trained on the part fits the whole."""
    dataset = ImageFolderDataset(source, use_labels=True)
    names = class_names(dataset)
    unknown = sorted(set(keep) - set(names))
    if unknown or not keep:
        raise ValueError(f"{source}: classes to keep {list(keep)}: expected some of {names}")
    wanted = {names.index(name) for name in keep}
    picks = [i for i, label in enumerate(class_indices(dataset)) if label in wanted]
    write_subset(dataset, dest, picks, dict(subset=dict(of=str(source), classes=list(keep))))
    return len(picks)

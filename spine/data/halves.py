"""Two halves of a labelled dataset that share no study, stratified by class and seeded (spine.data.splits).

The experiment's independent judge trains on half A and measures in its features against half B: images it never
saw, like the generated images and the test split it compares with them (a network's features of its own training
images sit tighter than those of any other image, which would bias its precision/recall and their real-vs-real
baseline alike). The image files are copied byte for byte; dataset.json keeps its entries and names the half.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from spine.data.dataset_tool import check_dest, open_dest
from spine.data.splits import split_by_study
from training.dataset import ImageFolderDataset


def write_halves(source: str, dest_a: str, dest_b: str, seed: int) -> dict[str, int]:
    """Write half A and half B of `source` (zips or folders, atomic, never overwritten); returns their sizes."""
    for dest in (dest_a, dest_b):
        check_dest(dest)
    dataset = ImageFolderDataset(source, use_labels=True)
    labels = [int(np.argmax(dataset.get_label(i))) for i in range(len(dataset))]
    infos = [dataset.image_info(i) for i in range(len(dataset))]
    half_a, half_b = split_by_study([info["study_id"] for info in infos], labels, 0.5, seed)
    entries = {entry["file"]: entry for entry in dataset.metadata.get("images", [])}
    for dest, part, picks in ((dest_a, "a", half_a), (dest_b, "b", half_b)):
        with open_dest(dest) as add:
            for i in picks:
                with dataset._open_file(infos[i]["file"]) as f:  # pylint: disable=protected-access
                    add(infos[i]["file"], f.read())
            meta = _half_json(dataset, [infos[i]["file"] for i in picks], [labels[i] for i in picks], entries)
            meta["spinegan"]["half"] = dict(of=str(source), part=part, seed=seed, by="study, stratified by class")
            add("dataset.json", json.dumps(meta, indent=1).encode("utf-8"))
    return dict(a=len(half_a), b=len(half_b))


def _half_json(
    dataset: ImageFolderDataset, files: list[str], labels: list[int], entries: dict[str, Any]
) -> dict[str, Any]:
    names = list(dataset.metadata.get("class_names") or [str(k) for k in range(dataset.label_dim)])
    counts = np.bincount(labels, minlength=len(names)).tolist()
    block = dict(dataset.metadata)
    block.update(
        images=[entries[f] for f in files if f in entries],
        num_images=len(files),
        class_counts=dict(zip(names, counts)),
    )
    return {"labels": [[f, label] for f, label in zip(files, labels)], "spinegan": block}

"""Two halves of a labelled dataset that share no study, stratified by class and seeded (spine.data.splits).

The experiment's independent judge trains on half A and measures in its features against half B: images it never
saw, like the generated images and the test split it compares with them (a network's features of its own training
images sit tighter than those of any other image, which would bias its precision/recall and their real-vs-real
baseline alike). The image files are copied byte for byte; dataset.json keeps its entries and names the half.
"""

from __future__ import annotations

from spine.data.dataset_tool import check_dest
from spine.data.splits import split_by_study
from spine.data.subset import class_indices, write_subset
from training.dataset import ImageFolderDataset


def write_halves(source: str, dest_a: str, dest_b: str, seed: int) -> dict[str, int]:
    """Write half A and half B of `source` (zips or folders, atomic, never overwritten); returns their sizes."""
    for dest in (dest_a, dest_b):
        check_dest(dest)
    dataset = ImageFolderDataset(source, use_labels=True)
    studies = [dataset.image_info(i)["study_id"] for i in range(len(dataset))]
    half_a, half_b = split_by_study(studies, class_indices(dataset), 0.5, seed)
    for dest, part, picks in ((dest_a, "a", half_a), (dest_b, "b", half_b)):
        half = dict(of=str(source), part=part, seed=seed, by="study, stratified by class")
        write_subset(dataset, dest, picks, dict(half=half))
    return dict(a=len(half_a), b=len(half_b))

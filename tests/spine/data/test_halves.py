"""spine.data.halves: two study-disjoint, class-stratified halves, images copied byte for byte."""

import io
import json
import zipfile

import numpy as np
import PIL.Image
import pytest

from spine.data.halves import write_halves
from training.dataset import ImageFolderDataset


def write_studies(path, num_studies: int = 20) -> str:
    """A zip of 2 images per study; a study's class alternates, 1 in 4 studies abnormal."""
    labels, images = [], []
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(2 * num_studies):
            name = f"00000/img{i:08d}.png"
            buffer = io.BytesIO()
            PIL.Image.fromarray(np.full((8, 8), i, np.uint8), "L").save(buffer, "png")
            archive.writestr(name, buffer.getvalue())
            label = int((i // 2) % 4 == 0)
            labels.append([name, label])
            images.append(dict(file=name, study_id=f"study{i // 2}", image_id=f"image{i}"))
        meta = dict(label_mode="abnormality", class_names=["normal", "abnormal"], images=images)
        archive.writestr("dataset.json", json.dumps(dict(labels=labels, spinegan=meta)))
    return str(path)


def contents(path: str) -> dict:
    dataset = ImageFolderDataset(path, use_labels=True)
    return {
        dataset.image_info(i)["file"]: (dataset.image_info(i)["study_id"], int(dataset.get_label(i).argmax()))
        for i in range(len(dataset))
    }


def test_halves_share_no_study_and_keep_every_image_and_label(tmp_path):
    source = write_studies(tmp_path / "train.zip")
    sizes = write_halves(source, str(tmp_path / "a.zip"), str(tmp_path / "b.zip"), seed=3)
    whole, a, b = contents(source), contents(str(tmp_path / "a.zip")), contents(str(tmp_path / "b.zip"))
    assert sizes == dict(a=len(a), b=len(b)) and len(a) + len(b) == 40 and {**a, **b} == whole
    assert not {study for study, _ in a.values()} & {study for study, _ in b.values()}
    # 5 abnormal and 15 normal studies: round(0.5 * n) of each stratum to B (2 or 3 abnormal, 7 or 8 normal)
    abnormal_b = sum(label for _, label in b.values()) // 2
    assert abnormal_b in (2, 3) and len(b) // 2 - abnormal_b in (7, 8)
    with zipfile.ZipFile(source) as whole_zip, zipfile.ZipFile(tmp_path / "a.zip") as half:
        assert all(half.read(name) == whole_zip.read(name) for name in a)  # byte for byte
        meta = json.loads(half.read("dataset.json"))["spinegan"]
    assert meta["half"] == dict(of=source, part="a", seed=3, by="study, stratified by class")
    assert meta["num_images"] == len(a) and sum(meta["class_counts"].values()) == len(a)
    again = tmp_path / "again"
    write_halves(source, str(again / "a.zip"), str(again / "b.zip"), seed=3)
    assert contents(str(again / "b.zip")) == b  # seeded
    with pytest.raises(Exception, match="already exists"):
        write_halves(source, str(tmp_path / "a.zip"), str(tmp_path / "c.zip"), seed=3)
    assert not (tmp_path / "c.zip").exists()

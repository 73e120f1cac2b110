"""spine.data.subset: the images of some classes as a dataset of their own, copied byte for byte."""

import json
import zipfile

import pytest

from spine.data.subset import write_classes
from tests.spine.data.test_halves import contents, write_studies


def test_the_kept_classes_are_exactly_the_images_of_those_classes(tmp_path):
    source = write_studies(tmp_path / "train.zip")  # 20 studies of 2 images, 5 studies abnormal
    count = write_classes(source, str(tmp_path / "normal.zip"), ["normal"])
    whole, normal = contents(source), contents(str(tmp_path / "normal.zip"))
    assert count == len(normal) == 30 and normal == {f: v for f, v in whole.items() if v[1] == 0}
    with zipfile.ZipFile(source) as whole_zip, zipfile.ZipFile(tmp_path / "normal.zip") as part:
        assert all(part.read(name) == whole_zip.read(name) for name in normal)
        meta = json.loads(part.read("dataset.json"))["spinegan"]
    assert meta["class_names"] == ["normal", "abnormal"]  # a conditional network on the part fits the whole
    assert meta["class_counts"] == dict(normal=30, abnormal=0) and len(meta["images"]) == 30
    assert meta["subset"] == dict(of=source, classes=["normal"])


def test_unknown_classes_and_an_existing_destination_are_refused(tmp_path):
    source = write_studies(tmp_path / "train.zip")
    with pytest.raises(ValueError, match=r"classes to keep \['fracture'\]: expected some of \['normal', 'abnormal'\]"):
        write_classes(source, str(tmp_path / "x.zip"), ["fracture"])
    assert not (tmp_path / "x.zip").exists()
    write_classes(source, str(tmp_path / "x.zip"), ["abnormal"])
    with pytest.raises(Exception, match="already exists"):
        write_classes(source, str(tmp_path / "x.zip"), ["abnormal"])

"""spine.data.labels: every label mode and policy on a hand-written CSV with known answers."""

import pytest

from spine.data import labels as L

# Columns deliberately in a different order than VinDr's, plus an unused one: reading is by name.
CSV = """lesion_type,image_id,extra,rad_id,study_id,series_id,xmin,ymin,xmax,ymax
No finding,n1,x,rad1,s1,se1,,,,
Osteophytes,a1,x,rad1,s1,se1,1,1,5,5
Osteophytes,a2,x,rad1,s2,se2,1,1,5,5
Osteophytes,a2,x,rad1,s2,se2,6,6,9,9
Disc space narrowing,a2,x,rad1,s2,se2,1,1,5,5
Fracture,a3,x,rad1,s2,se2,1,1,5,5
Surgical implant,a4,x,rad1,s3,se3,1,1,5,5
No finding,a4,x,rad2,s3,se3,,,,
Spondylolysthesis,a5,x,rad1,s3,se3,1,1,5,5
Osteophytes,a5,x,rad1,s3,se3,1,1,5,5
Vertebral collapse,a6,x,rad1,s4,se4,1,1,5,5
Vertebral collapse,a6,x,rad2,s4,se4,1,1,5,5
Osteophytes,a6,x,rad2,s4,se4,1,1,5,5
"""


@pytest.fixture
def annotations(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(CSV)
    return L.read_annotations(path)


def labels_of(annotations, **spec):
    kept, excluded = L.make_labels(annotations.values(), L.LabelSpec(**spec))
    return {img.image_id: img.label for img in kept}, dict(excluded)


def test_read_groups_rows_by_image(annotations):
    assert list(annotations) == ["a1", "a2", "a3", "a4", "a5", "a6", "n1"]
    assert annotations["a2"].study_id == "s2" and len(annotations["a2"].rows) == 3
    assert annotations["a4"].rows == (("rad1", "Surgical implant"), ("rad2", "No finding"))


def test_abnormality_single_box_image_is_abnormal(annotations):
    got, excluded = labels_of(annotations, mode="abnormality")
    assert got == dict(n1=0, a1=1, a2=1, a3=1, a4=1, a5=1, a6=1) and excluded == {}
    got, _ = labels_of(annotations, mode="abnormality", consensus="all")
    assert got == dict(n1=0, a1=1, a2=1, a3=1, a4=0, a5=1, a6=1)  # a4: rad2 saw nothing


def test_lesion_paper_policy_drops_multi_and_rare(annotations):
    got, excluded = labels_of(annotations, mode="lesion")
    assert got == dict(n1=0, a1=3, a4=5)
    assert excluded == {"several lesion types": 3, "rare lesion type": 1}


def test_lesion_multi_policies(annotations):
    got, _ = labels_of(annotations, mode="lesion", multi_lesion="most-frequent")
    assert got == dict(n1=0, a1=3, a2=3, a4=5, a5=3, a6=6)  # a5 ties 1:1 -> earlier class; a6 has 2 VC boxes
    got, _ = labels_of(annotations, mode="lesion", multi_lesion="first-by-priority")
    assert got == dict(n1=0, a1=3, a2=1, a4=5, a5=3, a6=3)


def test_lesion_rare_policies(annotations):
    got, _ = labels_of(annotations, mode="lesion", rare="other")
    assert got["a3"] == L.LESION_CLASSES.index("Other lesions") == 7
    got, _ = labels_of(annotations, mode="lesion", rare="keep")
    names = L.class_names(L.LabelSpec(mode="lesion", rare="keep"))
    assert len(names) == 14 and names[got["a3"]] == "Fracture"


def test_lesion_consensus_all(annotations):
    got, excluded = labels_of(annotations, mode="lesion", consensus="all")
    assert got == dict(n1=0, a1=3, a4=0, a6=6)  # a6: only Vertebral collapse is shared by rad1 and rad2
    assert excluded == {"several lesion types": 2, "rare lesion type": 1}


def test_multilabel(annotations):
    names = L.class_names(L.LabelSpec(mode="multilabel"))
    assert names == list(L.LESION_CLASSES[1:])
    got, excluded = labels_of(annotations, mode="multilabel")
    assert got["n1"] == [0.0] * 7
    assert got["a2"] == [1.0, 0, 1.0, 0, 0, 0, 0]
    assert got["a6"] == [0, 0, 1.0, 0, 0, 1.0, 0]
    assert "a3" not in got and excluded == {"rare lesion type": 1}
    got, _ = labels_of(annotations, mode="multilabel", rare="keep")
    keep_names = L.class_names(L.LabelSpec(mode="multilabel", rare="keep"))
    assert len(keep_names) == 13 and [n for n, v in zip(keep_names, got["a3"]) if v] == ["Fracture"]


def test_none_mode_keeps_everything(annotations):
    got, excluded = labels_of(annotations, mode="none")
    assert set(got) == set(annotations) and set(got.values()) == {None} and excluded == {}
    assert L.class_names(L.LabelSpec(mode="none")) == []


def test_count_classes():
    assert L.count_classes([0, 1, 1], ["normal", "abnormal"]) == {"normal": 1, "abnormal": 2}
    assert L.count_classes([[1.0, 0.0], [1.0, 1.0]], ["a", "b"]) == {"a": 2, "b": 1}


def test_missing_column_names_file_and_column(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("image_id,rad_id,lesion_type\nx,rad1,No finding\n")
    with pytest.raises(L.AnnotationError, match=r"bad\.csv: missing column 'study_id'"):
        L.read_annotations(path)


def test_unknown_lesion_names_file_line_and_name(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("image_id,study_id,rad_id,lesion_type\nx,s,rad1,No finding\ny,s,rad1,Osteophyte\n")
    with pytest.raises(L.AnnotationError, match=r"bad\.csv, line 3: unknown lesion type 'Osteophyte'"):
        L.read_annotations(path)


def test_image_in_two_studies_is_an_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("image_id,study_id,rad_id,lesion_type\nx,s1,rad1,No finding\nx,s2,rad1,No finding\n")
    with pytest.raises(L.AnnotationError, match="line 3: image x listed under two studies"):
        L.read_annotations(path)


def test_bad_spec_option():
    with pytest.raises(ValueError, match="multi_lesion"):
        L.LabelSpec(mode="lesion", multi_lesion="majority")

"""Tests of the VinDr-SpineXR-shaped phantom (spine.phantom and its anatomy, lesion and image modules)."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re

import numpy as np
import pydicom
import pytest
from click.testing import CliRunner

from spine.data.dicom import DecodeError, decode_dicom
from spine.data.labels import LESION_CLASSES, NO_FINDING, RARE_CLASSES
from spine.phantom.anatomy import LEVELS, Canvas, Patient, View, layout_spine
from spine.phantom.image import Difficulty, Study, render_image
from spine.phantom.lesions import PHANTOM_CLASSES, Lesion, apply_to_morphology, draw_lesions, sample_lesions
from spine.phantom.tree import CSV_COLUMNS, IDENTITY_FILE, main, make_phantom_tree

HEX32 = re.compile(r"^[0-9a-f]{32}$")


def read_rows(root: str, split: str) -> list[dict[str, str]]:
    with open(os.path.join(root, "annotations", f"{split}.csv"), newline="") as f:
        return list(csv.DictReader(f))


def all_rows(root: str) -> list[tuple[str, dict[str, str]]]:
    return [(split, row) for split in ("train", "test") for row in read_rows(root, split)]


def dicom_path(root: str, split: str, image_id: str) -> str:
    return os.path.join(root, f"{split}_images", f"{image_id}.dicom")


def decoded(root: str, split: str, image_id: str) -> tuple[pydicom.Dataset, np.ndarray]:
    ds = pydicom.dcmread(dicom_path(root, split, image_id))
    return ds, ds.pixel_array


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory) -> tuple[str, dict]:
    root = str(tmp_path_factory.mktemp("phantom") / "tree")
    return root, make_phantom_tree(root, 40, 16, seed=3, size=96, truncated=2)


@pytest.fixture(scope="module")
def large_tree(tmp_path_factory) -> tuple[str, dict]:
    root = str(tmp_path_factory.mktemp("phantom") / "tree")
    return root, make_phantom_tree(root, 360, 140, seed=11, size=64)


def test_layout_and_columns(small_tree):
    root, _ = small_tree
    assert sorted(os.listdir(root)) == ["annotations", IDENTITY_FILE, "test_images", "train_images"]
    assert sorted(os.listdir(os.path.join(root, "annotations"))) == ["test.csv", "train.csv"]
    for split in ("train", "test"):
        with open(os.path.join(root, "annotations", f"{split}.csv")) as f:
            assert f.readline().rstrip("\n") == ",".join(CSV_COLUMNS)
        ids = {row["image_id"] for row in read_rows(root, split)}
        assert all(HEX32.match(i) for i in ids)
        assert sorted(os.listdir(os.path.join(root, f"{split}_images"))) == sorted(f"{i}.dicom" for i in ids)
    for _, row in all_rows(root):
        assert HEX32.match(row["study_id"]) and HEX32.match(row["series_id"])
        has_box = row["lesion_type"] != NO_FINDING
        assert all((row[c] != "") == has_box for c in ("xmin", "ymin", "xmax", "ymax"))


def test_counts_and_study_split(small_tree):
    root, summary = small_tree
    images = {s: {r["image_id"] for r in read_rows(root, s)} for s in ("train", "test")}
    assert len(images["train"]) == 40 and len(images["test"]) == 16
    studies = {s: {} for s in ("train", "test")}
    for split, row in all_rows(root):
        studies[split].setdefault(row["study_id"], set()).add(row["image_id"])
    assert not set(studies["train"]) & set(studies["test"])
    sizes = [len(v) for s in studies.values() for v in s.values()]
    assert max(sizes) <= 3 and 1.5 <= np.mean(sizes) <= 2.6
    assert summary["num_images"] == {"train": 40, "test": 16}
    assert summary["num_studies"] == {s: len(studies[s]) for s in studies}


def test_same_seed_same_tree_whatever_the_workers(tmp_path):
    a = make_phantom_tree(str(tmp_path / "a"), 6, 3, seed=5, size=80, workers=1)
    make_phantom_tree(str(tmp_path / "b"), 6, 3, seed=5, size=80, workers=2)
    make_phantom_tree(str(tmp_path / "c"), 6, 3, seed=6, size=80)
    for split in ("train", "test"):
        csv_a, csv_b, csv_c = (open(tmp_path / d / "annotations" / f"{split}.csv", "rb").read() for d in "abc")
        assert csv_a == csv_b and csv_a != csv_c
        for row in read_rows(str(tmp_path / "a"), split):
            ds_a, pix_a = decoded(str(tmp_path / "a"), split, row["image_id"])
            ds_b, pix_b = decoded(str(tmp_path / "b"), split, row["image_id"])
            np.testing.assert_array_equal(pix_a, pix_b)
            assert (ds_a.SOPInstanceUID, ds_a.StudyInstanceUID) == (ds_b.SOPInstanceUID, ds_b.StudyInstanceUID)
    assert a["num_images"] == {"train": 6, "test": 3}


def test_dicoms_decode_with_real_world_variation(large_tree):
    root, _ = large_tree
    photometric, rescale, shapes, study_uids = set(), set(), set(), {}
    for split, image_id in {(s, r["image_id"]) for s, r in all_rows(root)}:
        ds, pix = decoded(root, split, image_id)
        assert pix.dtype == np.uint16 and pix.shape == (ds.Rows, ds.Columns) and int(pix.max()) <= 4095
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.Modality) == (16, 12, 11, "DX")
        assert ds.Columns == 64 and ds.Rows >= 64
        photometric.add(ds.PhotometricInterpretation)
        rescale.add((float(ds.RescaleSlope), float(ds.RescaleIntercept)))
        shapes.add(pix.shape)
        study_uids[image_id] = ds.StudyInstanceUID
    assert photometric == {"MONOCHROME1", "MONOCHROME2"}
    assert len(rescale) >= 3 and any(rows > cols for rows, cols in shapes)
    by_study: dict[str, set[str]] = {}
    for _, row in all_rows(root):
        by_study.setdefault(row["study_id"], set()).add(study_uids[row["image_id"]])
    assert all(len(uids) == 1 for uids in by_study.values())
    assert len({next(iter(u)) for u in by_study.values()}) == len(by_study)


def test_truncated_files_are_listed_and_fail_to_decode(small_tree):
    root, summary = small_tree
    with open(os.path.join(root, IDENTITY_FILE)) as f:
        truncated = json.load(f)["truncated"]
    assert len(truncated) == 2 and truncated == summary["truncated"]
    for rel in truncated:  # the importer's decoder refuses each one, naming the file
        with pytest.raises(DecodeError, match=re.escape(os.path.basename(rel))):
            decode_dicom(os.path.join(root, rel))
    listed = {f"{s}_images/{r['image_id']}.dicom" for s, r in all_rows(root)}
    assert set(truncated) <= listed
    for rel in listed - set(truncated):
        assert pydicom.dcmread(os.path.join(root, rel)).pixel_array.size > 0


def test_monochrome1_inverted_shows_bone_bright(large_tree):
    root, _ = large_tree
    checked = 0
    for split, row in all_rows(root):
        if row["lesion_type"] not in ("Vertebral collapse", "Spondylolysthesis"):
            continue
        ds, pix = decoded(root, split, row["image_id"])
        if ds.PhotometricInterpretation != "MONOCHROME1":
            continue
        x0, y0, x1, y1 = (int(float(row[c])) for c in ("xmin", "ymin", "xmax", "ymax"))
        shown = pix.max() - pix.astype(np.float64)  # the display inversion of MONOCHROME1
        assert shown[y0 : y1 + 1, x0 : x1 + 1].mean() > np.median(shown)
        assert pix[y0 : y1 + 1, x0 : x1 + 1].mean() < np.median(pix)  # stored values: bone dark
        checked += 1
    assert checked >= 5


def test_every_lesion_class_appears_with_boxes_inside(large_tree):
    root, summary = large_tree
    sizes = {}
    seen = set()
    for split, row in all_rows(root):
        assert row["lesion_type"] in LESION_CLASSES + RARE_CLASSES
        seen.add(row["lesion_type"])
        if row["lesion_type"] == NO_FINDING:
            continue
        if row["image_id"] not in sizes:
            ds = pydicom.dcmread(dicom_path(root, split, row["image_id"]), stop_before_pixels=True)
            sizes[row["image_id"]] = (ds.Rows, ds.Columns)
        rows, cols = sizes[row["image_id"]]
        x0, y0, x1, y1 = (float(row[c]) for c in ("xmin", "ymin", "xmax", "ymax"))
        assert 0 <= x0 < x1 <= cols - 1 and 0 <= y0 < y1 <= rows - 1
    assert set(PHANTOM_CLASSES) <= seen
    assert set(summary["images_per_class"]) == seen


def test_about_sixty_percent_normal(large_tree):
    root, _ = large_tree
    normal: dict[str, bool] = {}
    for _, row in all_rows(root):
        normal[row["image_id"]] = normal.get(row["image_id"], True) and row["lesion_type"] == NO_FINDING
    assert len(normal) == 500
    assert abs(np.mean(list(normal.values())) - 0.6) < 0.08


def test_second_radiologist_boxes_differ_a_little(large_tree):
    root, _ = large_tree
    by_image: dict[str, dict[str, list]] = {}
    for _, row in all_rows(root):
        if row["lesion_type"] != NO_FINDING:
            box = [float(row[c]) for c in ("xmin", "ymin", "xmax", "ymax")]
            by_image.setdefault(row["image_id"], {}).setdefault(row["rad_id"], []).append((row["lesion_type"], box))
    doubles = [reads for reads in by_image.values() if len(reads) == 2]
    assert len(doubles) >= 5 and all(len(reads) <= 2 for reads in by_image.values())
    for first, second in (list(reads.values()) for reads in doubles):
        assert [k for k, _ in first] == [k for k, _ in second]
        for (_, a), (_, b) in zip(first, second):
            inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
            assert 0.3 < inter / union < 1.0


def test_fake_identities_are_recorded(small_tree):
    root, _ = small_tree
    with open(os.path.join(root, IDENTITY_FILE)) as f:
        sidecar = json.load(f)
    values = set(sidecar["identifying_values"])
    truncated = set(sidecar["truncated"])
    study_of = {r["image_id"]: (s, r["study_id"]) for s, r in all_rows(root)}
    assert set(sidecar["studies"]) == {study for _, study in study_of.values()}
    for image_id, (split, study) in study_of.items():
        if f"{split}_images/{image_id}.dicom" in truncated:
            continue
        ds = pydicom.dcmread(dicom_path(root, split, image_id), stop_before_pixels=True)
        assert str(ds.PatientName).startswith("PHANTOM^")
        for key in ("PatientName", "PatientID", "PatientBirthDate"):
            assert str(ds[key].value) in values
            assert str(ds[key].value) == sidecar["studies"][study][key]


def test_refuses_non_empty_destination_and_leaves_nothing(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="--outdir"):
        make_phantom_tree(str(dest), 2, 1)
    result = CliRunner().invoke(main, ["--outdir", str(dest), "--num-train", "2", "--num-test", "1"])
    assert result.exit_code != 0 and "not an empty directory" in result.output
    assert sorted(os.listdir(tmp_path)) == ["out"] and os.listdir(dest) == ["keep.txt"]


def test_cli_writes_into_empty_directory(tmp_path):
    dest = tmp_path / "empty"
    dest.mkdir()
    result = CliRunner().invoke(
        main, ["--outdir", str(dest), "--num-train", "3", "--num-test", "2", "--size", "64", "--truncated", "1"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["num_images"] == {"train": 3, "test": 2} and len(summary["truncated"]) == 1
    assert sorted(os.listdir(tmp_path)) == ["empty"]


def test_difficulty_levels():
    assert Difficulty.from_level(0.0) == Difficulty(severity_range=(0.8, 1.0), noise=0.01)
    hard = Difficulty.from_level(1.0)
    assert hard.severity_range == pytest.approx((0.25 * 0.3, 0.25)) and hard.noise == pytest.approx(0.06)
    with pytest.raises(ValueError, match="difficulty"):
        Difficulty.from_level(1.5)
    rng = np.random.default_rng(0)
    severities = [les.severity for _ in range(200) for les in sample_lesions(rng, True, (0.2, 0.4))]
    assert 0.2 <= min(severities) < 0.22 and 0.38 < max(severities) <= 0.4
    assert sample_lesions(rng, False, (0.8, 1.0)) == ()


def test_geometric_lesions_change_the_layout_by_their_closed_forms():
    rng = np.random.default_rng(1)
    patient, view = Patient.sample(rng), View.sample(rng, 320, 256)
    l3, gap = LEVELS.index("L3"), LEVELS.index("L4")  # gap L4-L5
    lesions = (Lesion("Vertebral collapse", l3, 0.5, (0.0,) * 6), Lesion("Disc space narrowing", gap, 0.5, (0.0,) * 6))
    morph = apply_to_morphology(lesions, patient.morph)
    sick = layout_spine(dataclasses.replace(patient, morph=morph), view)
    healthy = layout_spine(patient, view)
    assert sick.disc_heights[gap] == pytest.approx(healthy.disc_heights[gap] * (1 - 0.9 * 0.5))
    body = sick.vertebrae[l3]
    ps, as_, ai, pi = body.corners()
    posterior, anterior = np.hypot(*(pi - ps)), np.hypot(*(ai - as_))
    assert body.wedge == pytest.approx(0.1 + 0.7 * 0.5)
    assert anterior / posterior == pytest.approx(1 - body.wedge)
    assert patient.morph.wedge[l3] != morph.wedge[l3]  # the input morphology is not modified


def test_lesion_scale_grows_the_drawn_lesions_by_its_factor():
    """Each overlay lesion's box half-size is a closed form in the scale: a focal spot's is 1.25 r with
    r = (0.15 + 0.3 s) h * scale, so doubling the scale doubles the box; the anatomy (the layout) is untouched."""
    rng = np.random.default_rng(2)
    patient, view = Patient.sample(rng), View.sample(rng, 640, 512)
    spine = layout_spine(patient, view)
    site = LEVELS.index("L3")
    spot = Lesion("Other lesions", site, 0.5, (0.9, 0.5, 0.5, 0.5, 0.5, 0.5))  # sclerotic, centred
    widths, masses = {}, {}
    for scale in (1.0, 2.0):
        canvas = Canvas(640, 512)
        ((kind, box),) = draw_lesions(canvas, spine, patient, (spot,), 0.6, scale)
        widths[scale] = box[2] - box[0]
        masses[scale] = float(canvas.mu.sum())
    r = (0.15 + 0.3 * 0.5) * spine.vertebrae[site].height
    assert kind == "Other lesions" and widths[1.0] == pytest.approx(2 * 1.25 * r, rel=1e-6)
    assert widths[2.0] == pytest.approx(2 * widths[1.0], rel=1e-6)
    # The spot's added attenuation is its area times its density: about 4x for twice the radius (the soft edge
    # of 0.6 px is a small share of radii of tens of pixels).
    assert masses[2.0] / masses[1.0] == pytest.approx(4.0, rel=0.05)
    assert Difficulty.from_level(0.0, 2.0).lesion_scale == 2.0
    with pytest.raises(ValueError, match="lesion_scale"):
        Difficulty.from_level(0.0, 10.0)


def test_lesion_scale_is_recorded_and_defaults_to_the_calibrated_phantom(tmp_path):
    summary = make_phantom_tree(str(tmp_path / "big"), 6, 2, seed=1, size=64, lesion_scale=2.5)
    assert summary["lesion_scale"] == 2.5
    assert make_phantom_tree(str(tmp_path / "plain"), 6, 2, seed=1, size=64)["lesion_scale"] == 1.0


def test_zoom_magnifies_the_anatomy_and_its_lesions_by_its_factor(tmp_path):
    """The same study and draws rendered at zoom 1 and 1.5: a focal spot's box (2 x 1.25 r, r proportional to the
    body height, itself proportional to the magnification) is 1.5 times as wide; zoom 1 is the default image."""
    study = Study(
        Patient.sample(np.random.default_rng(3)),
        (Lesion("Other lesions", LEVELS.index("L3"), 0.5, (0.9, 0.5, 0.5, 0.5, 0.5, 0.5)),),
    )
    widths = {}
    for zoom in (1.0, 1.5):
        _, ((kind, box),) = render_image(study, np.random.default_rng(4), 256, Difficulty.from_level(0.0, zoom=zoom))
        widths[zoom] = box[2] - box[0]
    assert kind == "Other lesions" and widths[1.5] == pytest.approx(1.5 * widths[1.0], rel=1e-6)
    default, _ = render_image(study, np.random.default_rng(4), 256, Difficulty.from_level(0.0))
    assert np.array_equal(
        default, render_image(study, np.random.default_rng(4), 256, Difficulty.from_level(0.0, zoom=1.0))[0]
    )
    with pytest.raises(ValueError, match="zoom"):
        Difficulty.from_level(0.0, zoom=3.0)
    assert make_phantom_tree(str(tmp_path / "z"), 2, 0, seed=1, size=64, zoom=1.5)["zoom"] == 1.5


def test_overwrite_replaces_an_earlier_phantom_and_nothing_else(tmp_path):
    import bad_inputs
    from click.testing import CliRunner

    from spine.phantom.tree import IDENTITY_FILE, main

    root = tmp_path / "tree"
    args = ["--outdir", str(root), "--num-train", "1", "--num-test", "0", "--size", "64"]
    assert CliRunner().invoke(main, args).exit_code == 0
    before = bad_inputs.tree(tmp_path)
    bad_inputs.assert_refused(
        CliRunner().invoke(main, args), "--overwrite to replace an earlier phantom", root=tmp_path, before=before
    )
    result = CliRunner().invoke(main, [*args, "--seed", "1", "--overwrite"])
    assert result.exit_code == 0, result.output
    after = bad_inputs.tree(tmp_path)
    old_images, new_images = ({p for p in tree if p.endswith(".dicom")} for tree in (before, after))
    assert len(new_images) == len(old_images) == 1 and new_images != old_images  # seed 1's image replaced seed 0's
    assert after - new_images == before - old_images and (root / IDENTITY_FILE).is_file()  # nothing aside
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("")
    before = bad_inputs.tree(tmp_path)
    bad_inputs.assert_refused(
        CliRunner().invoke(main, ["--outdir", str(other), "--overwrite"]),
        f"holds no {IDENTITY_FILE}; --overwrite replaces only a phantom tree",
        root=tmp_path,
        before=before,
    )

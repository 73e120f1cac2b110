"""spine.data.dataset_tool end to end on a phantom VinDr tree: counts, privacy, skipping, bad input."""

import collections
import csv
import json
import os
import zipfile

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

from spine.data import dataset_tool
from spine.data.labels import LESION_CLASSES, NO_FINDING, RARE_CLASSES
from spine.phantom.tree import make_phantom_tree
from training.dataset import ImageFolderDataset

NUM_TRAIN, NUM_TRUNCATED = 40, 3


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom") / "vindr"
    make_phantom_tree(str(root), NUM_TRAIN, 6, seed=3, size=64, truncated=NUM_TRUNCATED)
    with open(root / "phantom_identities.json") as f:
        identities = json.load(f)
    return root, identities


def run_tool(*args):
    result = CliRunner().invoke(dataset_tool.main, [str(a) for a in args])
    return result.exit_code, result.output


def expected_counts(root, identities, mode):
    """Class counts straight from the CSV (any-radiologist consensus, paper policies), truncated files removed."""
    truncated = {os.path.basename(p)[: -len(".dicom")] for p in identities["truncated"]}
    types = collections.defaultdict(set)
    with open(root / "annotations" / "train.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["image_id"] not in truncated:
                types[row["image_id"]].update({row["lesion_type"]} - {NO_FINDING})
    lesions = list(LESION_CLASSES[1:])
    if mode == "abnormality":
        return {"normal": sum(not t for t in types.values()), "abnormal": sum(bool(t) for t in types.values())}
    if mode == "multilabel":
        return {name: sum(name in t for t in types.values() if not t & set(RARE_CLASSES)) for name in lesions}
    single = [t for t in types.values() if len(t) <= 1 and not t & set(RARE_CLASSES)]
    return {name: sum((t or {NO_FINDING}) == {name} for t in single) for name in LESION_CLASSES}


def read_outputs(dest):
    """name -> bytes of every file the tool wrote (zip members, and the zip itself)."""
    if str(dest).endswith(".zip"):
        with zipfile.ZipFile(dest) as zf:
            files = {n: zf.read(n) for n in zf.namelist()}
        return dict(files, **{"<zip>": open(dest, "rb").read()})
    return {
        os.path.relpath(os.path.join(r, n), dest): open(os.path.join(r, n), "rb").read()
        for r, _d, names in os.walk(dest)
        for n in names
    }


@pytest.mark.parametrize("mode", ["abnormality", "lesion", "multilabel"])
def test_label_counts_and_loading(phantom, tmp_path, mode):
    root, identities = phantom
    code, out = run_tool("--source", root, "--dest", tmp_path / "d.zip", "--resolution", 32, "--labels", mode)
    assert code == 0, out
    meta = json.loads(read_outputs(tmp_path / "d.zip")["dataset.json"])
    expected = expected_counts(root, identities, mode)
    assert meta["spinegan"]["class_counts"] == expected
    ds = ImageFolderDataset(str(tmp_path / "d.zip"), use_labels=True)
    assert ds.image_shape == [1, 32, 32] and ds.label_dim == len(expected)
    label_sums = np.stack([ds.get_label(i) for i in range(len(ds))]).sum(axis=0)
    np.testing.assert_array_equal(label_sums, list(expected.values()))
    assert ds.image_info(0)["image_id"] == meta["spinegan"]["images"][0]["image_id"]
    if mode == "abnormality":  # every decodable image is kept
        assert len(ds) == NUM_TRAIN - NUM_TRUNCATED


def test_truncated_files_reported_and_skipped(phantom, tmp_path):
    root, identities = phantom
    code, out = run_tool("--source", root, "--dest", tmp_path / "d", "--resolution", 32)
    assert code == 0, out
    meta = json.loads((tmp_path / "d" / "dataset.json").read_text())
    skipped = meta["spinegan"]["skipped"]
    assert sorted(s["file"] for s in skipped) == sorted(identities["truncated"])
    assert all("truncated" in s["reason"] for s in skipped)
    assert f"skipped {NUM_TRUNCATED} undecodable" in out


def test_no_identifying_value_in_any_output(phantom, tmp_path):
    root, identities = phantom
    values = [v.encode() for v in identities["identifying_values"]]
    assert len(values) > 10
    for dest in (tmp_path / "d.zip", tmp_path / "d"):
        code, out = run_tool(
            "--source", root, "--dest", dest, "--resolution", 32, "--labels", "lesion", "--preview", f"{dest}.png"
        )
        assert code == 0, out
        files = dict(read_outputs(dest), preview=open(f"{dest}.png", "rb").read(), stdout=out.encode())
        leaks = [(name, v) for name, data in files.items() for v in values if v in data]
        assert leaks == []


def test_study_level_split_parts(phantom, tmp_path):
    root, _ = phantom
    parts = {}
    for part in ("train", "val"):
        code, out = run_tool(
            "--source",
            root,
            "--dest",
            tmp_path / f"{part}.zip",
            "--resolution",
            32,
            "--val-fraction",
            0.3,
            "--part",
            part,
            "--seed",
            5,
        )
        assert code == 0, out
        parts[part] = json.loads(read_outputs(tmp_path / f"{part}.zip")["dataset.json"])["spinegan"]["images"]
    studies = {p: {e["study_id"] for e in images} for p, images in parts.items()}
    assert studies["train"] and studies["val"] and not studies["train"] & studies["val"]
    assert {e["split"] for e in parts["val"]} == {"val"} and {e["split"] for e in parts["train"]} == {"train"}
    assert len(parts["train"]) + len(parts["val"]) == NUM_TRAIN - NUM_TRUNCATED


def test_workers_give_identical_output(phantom, tmp_path):
    root, _ = phantom
    for workers in (1, 2):
        code, out = run_tool(
            "--source",
            root,
            "--dest",
            tmp_path / f"w{workers}",
            "--resolution",
            32,
            "--max-images",
            12,
            "--workers",
            workers,
            "--transform",
            "pad",
        )
        assert code == 0, out
    one, two = read_outputs(tmp_path / "w1"), read_outputs(tmp_path / "w2")
    meta, meta2 = json.loads(one.pop("dataset.json")), json.loads(two.pop("dataset.json"))
    assert one == two and len(one) == meta["spinegan"]["num_images"]
    for m in (meta, meta2):
        del m["spinegan"]["source"]  # records --dest and --workers, which differ
    assert meta == meta2
    assert meta["spinegan"]["num_images"] + len(meta["spinegan"]["skipped"]) == 12


def test_plain_folder_source(phantom, tmp_path):
    root, identities = phantom
    src = tmp_path / "plain"
    src.mkdir()
    good = sorted(set(os.listdir(root / "test_images")))[:3]
    for name in good:
        (src / name).write_bytes((root / "test_images" / name).read_bytes())
    code, out = run_tool("--source", src, "--dest", tmp_path / "d.zip", "--resolution", 16)
    assert code == 0, out
    ds = ImageFolderDataset(str(tmp_path / "d.zip"))
    assert len(ds) == 3 and ds.metadata["label_mode"] == "none"
    assert [ds.image_info(i)["image_id"] for i in range(3)] == [n[: -len(".dicom")] for n in good]
    code, out = run_tool("--source", src, "--dest", tmp_path / "e.zip", "--labels", "abnormality")
    assert code == 1 and out.strip().startswith("Error: --labels=abnormality") and not (tmp_path / "e.zip").exists()


def make_vindr(root, csv_text):
    (root / "annotations").mkdir(parents=True)
    (root / "train_images").mkdir()
    (root / "annotations" / "train.csv").write_text(csv_text)
    return root


@pytest.mark.parametrize(
    "csv_text, message",
    [
        ("image_id,study_id,rad_id\nx,s,rad1\n", "missing column 'lesion_type'"),
        ("image_id,study_id,rad_id,lesion_type\nx,s,rad1,Osteophyte\n", "line 2: unknown lesion type 'Osteophyte'"),
    ],
)
def test_bad_csv_one_error_line_nothing_written(tmp_path, csv_text, message):
    src = make_vindr(tmp_path / "src", csv_text)
    code, out = run_tool("--source", src, "--dest", tmp_path / "out" / "d.zip")
    assert code == 1 and len(out.strip().splitlines()) == 1 and message in out and "train.csv" in out
    assert not (tmp_path / "out").exists()


def test_bad_source_and_dest(phantom, tmp_path):
    root, _ = phantom
    code, out = run_tool("--source", tmp_path / "missing", "--dest", tmp_path / "d.zip")
    assert code == 1 and out.strip() == f"Error: --source: {tmp_path / 'missing'} is not a readable folder"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    (tmp_path / "old.zip").write_bytes(b"old")
    for dest, message in ((tmp_path / "full", "is not an empty folder"), (tmp_path / "old.zip", "already exists")):
        code, out = run_tool("--source", root, "--dest", dest)
        assert code == 1 and len(out.strip().splitlines()) == 1 and message in out
    assert os.listdir(tmp_path / "full") == ["keep.txt"] and (tmp_path / "old.zip").read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["full", "old.zip"]  # no temp files left behind


def test_transform_image_crop_and_pad():
    image = np.arange(32, dtype=np.uint8).reshape(4, 8)
    crop = dataset_tool.transform_image(image, dataset_tool.ImageOptions(4, "center-crop", "nearest"))
    np.testing.assert_array_equal(crop, image[:, 2:6])
    pad = dataset_tool.transform_image(image, dataset_tool.ImageOptions(8, "pad", "nearest"))
    np.testing.assert_array_equal(pad[2:6], image)
    assert not pad[:2].any() and not pad[6:].any()


def test_preview_grid_one_row_per_class(phantom, tmp_path):
    root, identities = phantom
    code, out = run_tool(
        "--source",
        root,
        "--dest",
        tmp_path / "d.zip",
        "--resolution",
        32,
        "--labels",
        "lesion",
        "--multi-lesion",
        "most-frequent",
        "--preview",
        tmp_path / "p.png",
    )
    assert code == 0, out
    counts = json.loads(read_outputs(tmp_path / "d.zip")["dataset.json"])["spinegan"]["class_counts"]
    assert "Class counts: " + ", ".join(f"{k} {v}" for k, v in counts.items()) in out
    grid = np.asarray(PIL.Image.open(tmp_path / "p.png"))
    assert grid.shape == (len(LESION_CLASSES) * 128, 180 + 8 * 128)
    for row, n in enumerate(counts.values()):  # tiles filled exactly for the images a class has
        tiles = grid[row * 128 : (row + 1) * 128, 180:].reshape(128, 8, 128).transpose(1, 0, 2)
        assert [bool(t.any()) for t in tiles] == [k < min(n, 8) for k in range(8)]


# Bad inputs -> (options, exit status, the distinctive part of the one error line); nothing may be written.
BAD_INPUTS = {
    "missing source": (["--source", "{tmp}/missing"], 1, "is not a readable folder"),
    "existing zip": (["--dest", "{old_zip}"], 1, "already exists; choose a new zip file name"),
    "full folder": (["--dest", "{full}"], 1, "is not an empty folder"),
    "overwrite a folder that is no dataset": (
        ["--dest", "{full}", "--overwrite", ""],
        1,
        "holds no dataset.json; --overwrite replaces only a dataset folder",
    ),
    "dest under a file": (["--dest", "{old_zip}/d.zip"], 1, "old.zip is a file, not a folder"),
    "labels for a plain folder": (["--source", "{full}", "--labels", "lesion"], 1, "is a plain folder without"),
    "resolution not a power of two": (["--resolution", "24"], 2, "24 is not a power of two"),
    "negative seed": (["--seed", "-1"], 2, "-1 is not in the range 0<=x<=4294967295"),
    "everything held out": (["--val-fraction", "1"], 2, "--val-fraction"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_get_one_line_and_write_nothing(phantom, tmp_path, case):
    import bad_inputs

    root, _ = phantom
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.png").write_bytes(b"x")
    files = dict(tmp=tmp_path, full=tmp_path / "full", old_zip=bad_inputs.text_file(tmp_path / "old.zip"))
    changes, exit_code, message = BAD_INPUTS[case]
    options = {"--source": str(root), "--dest": str(tmp_path / "new.zip")}
    options.update(dict(zip(changes[::2], [value.format(**files) for value in changes[1::2]])))
    before = bad_inputs.tree(tmp_path)
    result = CliRunner().invoke(dataset_tool.main, [item for pair in options.items() for item in pair if item])
    bad_inputs.assert_refused(result, message.format(**files), exit_code, tmp_path, before)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_outputs_get_the_mode_of_plain_files_and_folders(phantom, tmp_path, umask):
    """Imported zips and folders (built in private temp entries, then renamed) and phantom trees follow the umask."""
    root, _ = phantom
    old = os.umask(umask)
    try:
        assert run_tool("--source", root, "--split", "test", "--dest", tmp_path / "d.zip", "--resolution", 16)[0] == 0
        assert run_tool("--source", root, "--split", "test", "--dest", tmp_path / "d", "--resolution", 16)[0] == 0
        make_phantom_tree(str(tmp_path / "tree"), 1, 0, seed=0, size=64)
    finally:
        os.umask(old)
    mode = lambda path: os.stat(path).st_mode & 0o777  # noqa: E731
    assert mode(tmp_path / "d.zip") == 0o666 & ~umask and mode(tmp_path / "d" / "dataset.json") == 0o666 & ~umask
    assert mode(tmp_path / "d") == 0o777 & ~umask and mode(tmp_path / "tree") == 0o777 & ~umask


@pytest.mark.parametrize("dest", ["d.zip", "d"])
def test_overwrite_replaces_an_earlier_import_whole(phantom, tmp_path, dest):
    root, _ = phantom
    dest = tmp_path / dest
    assert run_tool("--source", root, "--split", "test", "--dest", dest, "--resolution", 16)[0] == 0
    first = read_outputs(dest)
    assert run_tool("--source", root, "--split", "test", "--dest", dest, "--resolution", 16)[0] == 1  # refused
    assert (
        run_tool(
            "--source", root, "--split", "test", "--dest", dest, "--resolution", 16, "--max-images", 3, "--overwrite"
        )[0]
        == 0
    )
    second = read_outputs(dest)
    pngs = [[name for name in files if name.endswith(".png")] for files in (first, second)]
    assert len(pngs[1]) == 3 and len(pngs[0]) > 3  # nothing of the old import is left
    assert b'"overwrite"' not in second["dataset.json"]  # how it was written is no property of the data
    assert sorted(os.listdir(tmp_path)) == sorted([dest.name])  # no temp or aside folder left

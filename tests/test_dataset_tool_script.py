"""dataset_tool.py (top level): NVIDIA's options and sources; dataset.json labels and pixels round-trip; each
change is said; a VinDr root goes to the VinDr importer; bad inputs get one Error: line and leave nothing."""

import json
import zipfile

import bad_inputs
import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

import dataset_tool
from spine.phantom.tree import make_phantom_tree
from training.dataset import ImageFolderDataset


def rgb_source(root, shapes, labels=None, mode="RGB"):
    """A folder of random images (sub/img{i}.png, shape (h, w)) with NVIDIA's dataset.json when labels given."""
    (root / "sub").mkdir(parents=True)
    rng = np.random.RandomState(0)
    names = [f"sub/img{i}.png" for i in range(len(shapes))]
    for name, (h, w) in zip(names, shapes):
        pixels = rng.randint(0, 256, (h, w, 3) if mode == "RGB" else (h, w)).astype(np.uint8)
        PIL.Image.fromarray(pixels, mode).save(root / name)
    if labels is not None:
        (root / "dataset.json").write_text(json.dumps({"labels": [[n, k] for n, k in zip(names, labels)]}))
    return root, names


def run(*args):
    return CliRunner().invoke(dataset_tool.main, [str(a) for a in args])


def read_zip(path):
    with zipfile.ZipFile(path) as z:
        meta = json.loads(z.read("dataset.json"))
        images = {n: np.asarray(PIL.Image.open(z.open(n))) for n in z.namelist() if n.endswith(".png")}
    return meta, images


@pytest.mark.parametrize("labels", [[2, 0, 1], [[0.5, 1.0], [0.0, -1.0], [2.0, 0.25]]])
def test_nvidia_labels_and_rgb_pixels_round_trip(tmp_path, labels):
    src, names = rgb_source(tmp_path / "src", [(8, 8)] * 3, labels)
    result = run("--source", src, "--dest", tmp_path / "out.zip")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"Wrote 3 images with labels to {tmp_path / 'out.zip'}"  # nothing changed
    meta, images = read_zip(tmp_path / "out.zip")
    assert meta == {"labels": [[f"00000/img{i:08d}.png", label] for i, label in enumerate(labels)]}
    for i, name in enumerate(names):  # sorted source order, pixels untouched
        assert np.array_equal(images[f"00000/img{i:08d}.png"], np.asarray(PIL.Image.open(src / name)))
    dataset = ImageFolderDataset(str(tmp_path / "out.zip"), use_labels=True)
    expected = np.eye(3)[labels] if isinstance(labels[0], int) else np.array(labels)
    assert dataset.num_channels == 3 and np.array_equal(np.stack([dataset.get_label(i) for i in range(3)]), expected)


def test_a_zip_source_gives_the_same_dataset_as_its_folder(tmp_path):
    src, names = rgb_source(tmp_path / "src", [(8, 8)] * 2, [1, 0])
    with zipfile.ZipFile(tmp_path / "src.zip", "w") as z:
        for name in names + ["dataset.json"]:
            z.write(src / name, name)
    assert run("--source", src, "--dest", tmp_path / "a.zip").exit_code == 0
    result = run("--source", tmp_path / "src.zip", "--dest", tmp_path / "b")
    assert result.exit_code == 0, result.output
    meta_a, images_a = read_zip(tmp_path / "a.zip")
    assert json.loads((tmp_path / "b" / "dataset.json").read_text()) == meta_a
    for name, pixels in images_a.items():
        assert np.array_equal(np.asarray(PIL.Image.open(tmp_path / "b" / name)), pixels)


def test_each_change_is_said_and_missing_labels_drop_all(tmp_path):
    src, _ = rgb_source(tmp_path / "src", [(16, 24), (16, 24)], None)
    (src / "dataset.json").write_text(json.dumps({"labels": [["sub/img0.png", 1]]}))
    result = run(
        "--source",
        src,
        "--dest",
        tmp_path / "o.zip",
        "--transform",
        "center-crop",
        "--width",
        "8",
        "--height",
        "8",
        "--channels",
        "1",
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0] == f"Wrote 2 images without labels to {tmp_path / 'o.zip'}"
    assert set(lines[1:]) == {
        "  2 images: RGB converted to grey",
        "  2 images: cropped to the centre square",
        "  2 images: resized to 8x8 (lanczos)",
        "  labels dropped: 1 of 2 images have none in the source's dataset.json (first: sub/img1.png)",
    }
    meta, images = read_zip(tmp_path / "o.zip")
    assert meta == {"labels": None} and all(p.shape == (8, 8) for p in images.values())


def test_center_crop_wide_pads_above_and_below_and_drops_small_images(tmp_path):
    src, names = rgb_source(tmp_path / "src", [(8, 16), (4, 8)], mode="L")
    result = run(
        "--source",
        src,
        "--dest",
        tmp_path / "o.zip",
        "--transform",
        "center-crop-wide",
        "--width",
        "16",
        "--height",
        "8",
    )
    assert result.exit_code == 0, result.output
    assert "  1 images: dropped: too small for center-crop-wide" in result.output
    _, images = read_zip(tmp_path / "o.zip")
    assert list(images) == ["00000/img00000000.png"]
    out = images["00000/img00000000.png"]
    assert out.shape == (16, 16) and not out[:4].any() and not out[12:].any()
    assert np.array_equal(out[4:12], np.asarray(PIL.Image.open(src / names[0])))  # 16x8 already: no resize


def test_a_vindr_root_goes_to_the_vindr_importer(tmp_path):
    root = tmp_path / "vindr"
    make_phantom_tree(str(root), 6, 2, seed=0, size=64)
    result = run(
        "--source",
        root,
        "--dest",
        tmp_path / "v.zip",
        "--width",
        "16",
        "--height",
        "16",
        "--labels",
        "abnormality",
        "--max-images",
        "4",
    )
    assert result.exit_code == 0, result.output
    meta, images = read_zip(tmp_path / "v.zip")
    assert meta["spinegan"]["label_mode"] == "abnormality" and len(images) == 4
    assert all(p.shape == (16, 16) for p in images.values())


BAD_INPUTS = {
    "missing source": (["--source", "{tmp}/none"], 1, "--source: {tmp}/none is not a folder or a zip file"),
    "dest exists": (["--dest", "{exists}"], 1, "already exists; choose a new zip file name"),
    "not square": (["--width", None], 1, "sub/img0.png becomes 24x16; images must be square"),
    "transform without size": (
        ["--transform", "center-crop", "--width", None, "--height", None],
        1,
        "--transform=center-crop needs --width and --height",
    ),
    "not a power of two": (
        ["--width", "12", "--height", "12"],
        1,
        "becomes 12x12; images must be square with a power-of-two side",
    ),
    "vindr option on a folder": (["--labels", "lesion"], 1, "--labels applies to a VinDr-SpineXR root"),
    "bad dataset.json": (["--source", "{bad_json}"], 1, "dataset.json: expected NVIDIA's"),
    "mixed channels": (["--source", "{mixed}"], 1, "1 grey and 2 colour images; pass --channels=1"),
    "zero width": (["--width", "0"], 2, "0 is not in the range x>=1"),
    "unknown transform": (["--transform", "stretch"], 2, "'stretch' is not one of"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_get_one_line_and_write_nothing(tmp_path, case):
    src, _ = rgb_source(tmp_path / "src", [(16, 24)] * 2, [0, 1])
    bad_json, _ = rgb_source(tmp_path / "badjson", [(8, 8)], None)
    (bad_json / "dataset.json").write_text('{"labels": 5}')
    mixed, _ = rgb_source(tmp_path / "mixed", [(8, 8)] * 2, None)
    PIL.Image.new("L", (8, 8)).save(mixed / "grey.png")
    (tmp_path / "exists.zip").write_bytes(b"")
    files = dict(tmp=tmp_path, exists=tmp_path / "exists.zip", bad_json=bad_json, mixed=mixed)
    args = {
        "--source": str(src),
        "--dest": str(tmp_path / "out.zip"),
        "--transform": "center-crop",
        "--width": "8",
        "--height": "8",
    }
    changes, exit_code, message = BAD_INPUTS[case]
    for flag, value in zip(changes[::2], changes[1::2]):
        args[flag] = value.format(**files) if value is not None else None
    if args["--transform"] == "center-crop" and case == "not square":
        args["--transform"] = args["--height"] = None
    argv = [item for flag, value in args.items() if value is not None for item in (flag, value)]
    before = bad_inputs.tree(tmp_path)
    result = CliRunner().invoke(dataset_tool.main, argv)
    bad_inputs.assert_refused(result, message.format(**files), exit_code, tmp_path, before)

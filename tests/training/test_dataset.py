"""training.dataset.ImageFolderDataset on small folders and zips of PNGs."""

import json
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch

from training.dataset import DatasetError, ImageFolderDataset


def images(n, res=8, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    shape = [res, res] if channels == 1 else [res, res, channels]
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]


def write_folder(root, arrays, meta=None, names=None):
    names = names or [f"{i // 1000:05d}/img{i:08d}.png" for i in range(len(arrays))]
    for name, arr in zip(names, arrays):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        PIL.Image.fromarray(arr).save(root / name)
    if meta is not None:
        (root / "dataset.json").write_text(json.dumps(meta))
    return names


def write_zip(path, arrays, meta=None):
    folder = path.parent / (path.stem + "_src")
    names = write_folder(folder, arrays, meta)
    with zipfile.ZipFile(path, "w") as zf:
        for name in names + (["dataset.json"] if meta is not None else []):
            zf.write(folder / name, name)
    return names


def test_folder_round_trip_and_int_labels(tmp_path):
    arrays = images(5)
    names = write_folder(tmp_path, arrays)
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": [[n, i % 2] for i, n in enumerate(names)]}))
    ds = ImageFolderDataset(str(tmp_path), use_labels=True)
    assert len(ds) == 5 and ds.image_shape == [1, 8, 8] and ds.resolution == 8 and ds.num_channels == 1
    assert ds.label_shape == [2] and ds.has_onehot_labels
    for i in range(5):
        img, label = ds[i]
        assert img.dtype == np.uint8 and img.shape == (1, 8, 8)
        assert img.flags.writeable  # torch.as_tensor warns on read-only arrays (the DataLoader's collate)
        np.testing.assert_array_equal(img[0], arrays[i])
        np.testing.assert_array_equal(label, np.eye(2, dtype=np.float32)[i % 2])
    assert ds.image_info(3) == dict(file=names[3], image_id=None, study_id=None)


def test_zip_rgb_with_spinegan_block(tmp_path):
    arrays = images(4, channels=3)
    names = [f"00000/img{i:08d}.png" for i in range(4)]
    meta = {
        "labels": [[n, 1] for n in names],
        "spinegan": {
            "class_names": ["No finding", "a", "b"],
            "images": [dict(file=n, image_id=f"id{i}", study_id=f"s{i // 2}") for i, n in enumerate(names)],
        },
    }
    write_zip(tmp_path / "d.zip", arrays, meta)
    ds = ImageFolderDataset(str(tmp_path / "d.zip"), use_labels=True)
    assert ds.name == "d" and ds.image_shape == [3, 8, 8]
    assert ds.label_dim == 3  # size from class_names, not max label + 1
    np.testing.assert_array_equal(ds[2][0], arrays[2].transpose(2, 0, 1))
    assert ds.image_info(2) == dict(file=names[2], image_id="id2", study_id="s1")
    assert ds.metadata["class_names"] == ["No finding", "a", "b"]


def test_vector_labels_and_no_labels(tmp_path):
    names = write_folder(tmp_path, images(3))
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": [[n, [1.0, 0.0, 1.0]] for n in names]}))
    ds = ImageFolderDataset(str(tmp_path), use_labels=True)
    assert ds.label_shape == [3] and not ds.has_onehot_labels
    np.testing.assert_array_equal(ds.get_label(1), [1, 0, 1])
    plain = ImageFolderDataset(str(tmp_path))
    assert plain.label_shape == [0] and not plain.has_labels and plain[0][1].shape == (0,)
    assert plain.metadata == {}


def test_xflip_doubles_with_mirrored_second_half(tmp_path):
    arrays = images(3)
    write_folder(tmp_path, arrays)
    ds = ImageFolderDataset(str(tmp_path), xflip=True)
    assert len(ds) == 6
    for i in range(3):
        np.testing.assert_array_equal(ds[i][0][0], arrays[i])
        np.testing.assert_array_equal(ds[i + 3][0][0], arrays[i][:, ::-1])
    assert ds.get_details(4).xflip and ds.get_details(4).raw_idx == 1
    with pytest.raises(IndexError):
        ds[6]


def test_max_size_is_a_seeded_sorted_subset(tmp_path):
    arrays = images(10)
    write_folder(tmp_path, arrays)
    a = ImageFolderDataset(str(tmp_path), max_size=4, random_seed=1)
    raw = [a.get_details(i).raw_idx for i in range(len(a))]
    assert len(a) == 4 and raw == sorted(raw) and len(set(raw)) == 4
    assert raw == [
        ImageFolderDataset(str(tmp_path), max_size=4, random_seed=1).get_details(i).raw_idx for i in range(4)
    ]
    assert raw != [
        ImageFolderDataset(str(tmp_path), max_size=4, random_seed=2).get_details(i).raw_idx for i in range(4)
    ]
    np.testing.assert_array_equal(a[1][0][0], arrays[raw[1]])
    flipped = ImageFolderDataset(str(tmp_path), max_size=4, random_seed=1, xflip=True)
    assert len(flipped) == 8 and flipped.get_details(5).raw_idx == raw[1]  # subset before xflip


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda: np.zeros([8, 16], np.uint8), "8; expected a square|16x8; expected a square"),
        (lambda: np.zeros([12, 12], np.uint8), "not a power of two"),
        (lambda: np.zeros([8, 8, 4], np.uint8), "RGBA"),
    ],
)
def test_bad_first_image_names_the_file(tmp_path, bad, message):
    write_folder(tmp_path, [bad()], names=["bad.png"])
    with pytest.raises(DatasetError, match=f"bad.png: .*({message})"):
        ImageFolderDataset(str(tmp_path))


def test_mixed_sizes_and_channels_name_the_file(tmp_path):
    write_folder(
        tmp_path,
        [np.zeros([8, 8], np.uint8), np.zeros([16, 16], np.uint8), np.zeros([8, 8, 3], np.uint8)],
        names=["a.png", "b.png", "c.png"],
    )
    ds = ImageFolderDataset(str(tmp_path))
    with pytest.raises(DatasetError, match=r"b\.png: shape \[1, 16, 16\]"):
        ds[1]
    with pytest.raises(DatasetError, match=r"c\.png: shape \[3, 8, 8\]"):
        ds[2]


def test_resolution_mismatch_and_missing_labels(tmp_path):
    names = write_folder(tmp_path, images(2))
    with pytest.raises(DatasetError, match="resolution 8; expected 16"):
        ImageFolderDataset(str(tmp_path), resolution=16)
    with pytest.raises(DatasetError, match="no labels"):
        ImageFolderDataset(str(tmp_path), use_labels=True)
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": [[names[0], 0]]}))
    with pytest.raises(DatasetError, match=f"no label for {names[1]}"):
        ImageFolderDataset(str(tmp_path), use_labels=True)


def test_zip_handle_is_per_process(tmp_path, monkeypatch):
    write_zip(tmp_path / "d.zip", images(3))
    ds = ImageFolderDataset(tmp_path / "d.zip")
    parent_handle = ds._get_zipfile()
    monkeypatch.setattr("training.dataset.os.getpid", lambda: -1)  # as seen from a forked child
    child_handle = ds._get_zipfile()
    assert child_handle is not parent_handle and ds._get_zipfile() is child_handle
    assert parent_handle.fp is not None  # the parent's handle is left open for the parent


def test_forked_dataloader_workers_read_the_zip_intact(tmp_path):
    """Workers that inherit an open zip must not share its read offset (that gave 'Bad CRC-32' on a GPU run)."""
    arrays = images(48, res=128, seed=1)  # noise: ~50 KB PNGs, so concurrent reads interleave
    write_zip(tmp_path / "d.zip", arrays)
    ds = ImageFolderDataset(tmp_path / "d.zip")
    ds[0]  # the parent opens the zip before the workers fork
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context="fork")
    for _epoch in range(3):
        read = np.concatenate([batch.numpy() for batch, _labels in loader])
        np.testing.assert_array_equal(read[:, 0], np.stack(arrays))


@pytest.mark.parametrize(
    "odd, message",
    [
        (
            images(1, res=4)[0],
            "img00000002.png: 4x4 L image; every image must be 8x8 with 1 channel(s) like "
            "00000/img00000000.png (1 of 4 images differ)",
        ),
        (images(1, channels=3)[0], "img00000002.png: 8x8 RGB image; every image must be 8x8 with 1 channel(s)"),
        (None, "img00000002.png: not a readable image"),
    ],
)
def test_check_all_images_names_the_first_odd_file(tmp_path, odd, message):
    names = write_folder(tmp_path, images(4))
    if odd is None:
        (tmp_path / names[2]).write_bytes(b"not a png")
    else:
        PIL.Image.fromarray(odd).save(tmp_path / names[2])
    dataset = ImageFolderDataset(str(tmp_path))  # only the first image is read here
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        dataset.check_all_images()
    subsets = [ImageFolderDataset(str(tmp_path), max_size=1, random_seed=seed) for seed in range(8)]
    clean = [subset for subset in subsets if subset.image_info(0)["file"] != names[2]]
    assert clean and all(subset.check_all_images() is None for subset in clean)  # only the images used are checked

"""training.image_grid: snapshot grids at a legible size with each row's class named."""

import numpy as np
import PIL.Image

from training.image_grid import row_names, save_image_grid


def test_small_tiles_are_enlarged_whole_and_rows_are_labelled_in_their_own_band(tmp_path):
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, (6, 1, 16, 16)).astype(np.float32)  # 3 columns x 2 rows
    save_image_grid(
        images, tmp_path / "g.png", drange=(0, 255), grid_size=(3, 2), row_labels=["normal", "abnormal"], min_tile=40
    )  # 16 px -> 3x = 48 px, the smallest whole factor reaching 40
    grid = np.asarray(PIL.Image.open(tmp_path / "g.png"))
    margin = grid.shape[1] - 3 * 48
    assert grid.shape[0] == 2 * 48 and margin > 0
    tiles = grid[:, margin:].reshape(2, 48, 3, 48).transpose(0, 2, 1, 3).reshape(6, 48, 48)
    expected = np.kron(images[:, 0].astype(np.uint8), np.ones((3, 3), np.uint8))  # nearest neighbour, exact
    assert np.array_equal(tiles, expected)
    text = grid[:, :margin] < 128  # dark label pixels on white
    assert text[:48].any() and text[48:].any()  # one label in each row's band ...
    assert not text[46:50].any()  # ... and none crossing the boundary between them
    assert text[:48].sum() < text[48:].sum()  # 'abnormal' is the longer word


def test_a_grid_without_labels_or_enlargement_is_the_plain_tiling(tmp_path):
    images = np.arange(4 * 8 * 8, dtype=np.float32).reshape(4, 1, 8, 8) % 256
    save_image_grid(images, tmp_path / "g.png", drange=(0, 255), grid_size=(2, 2))
    grid = np.asarray(PIL.Image.open(tmp_path / "g.png"))
    assert grid.shape == (16, 16) and np.array_equal(grid[:8, 8:], images[1, 0].astype(np.uint8))


def test_row_names_come_from_the_class_names_or_the_index():
    labels = np.array([[1, 0]] * 3 + [[0, 1]] * 3 + [[1, 1]] * 3, dtype=np.float32)
    assert row_names(labels, 3, ["normal", "abnormal"]) == ["normal", "abnormal", "normal+abnormal"]
    assert row_names(labels, 3, None) == ["class 0", "class 1", "class 0+class 1"]

"""The loop's data path: one conversion to [-1, 1], rounds that never split a unit, draws through a sampler."""

import numpy as np
import torch

from training.data_path import DrawnBatches, RealBatch, SampledBatch, to_unit_range


def test_conversion_maps_0_and_255_to_the_ends():
    out = to_unit_range(torch.tensor([0, 51, 255], dtype=torch.uint8), torch.device("cpu"))
    assert out.dtype == torch.float32 and out[0] == -1 and out[2] == 1
    assert abs(float(out[1]) - (-0.6)) < 1e-6  # 51 / 127.5 - 1 in float32 (a few ulp of 1)


def test_shuffled_batch_splits_into_equal_rounds():
    batch = RealBatch(torch.arange(8.0).reshape(8, 1, 1, 1), torch.zeros(8, 0))
    rounds = batch.split(4)
    assert [r.img.flatten().tolist() for r in rounds] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert all(r.units is None for r in rounds)


def test_rounds_keep_units_whole_and_renumber_them():
    units = torch.tensor([0, 0, 0, 1, 2, 2, 3, 3, 3])
    batch = RealBatch(torch.arange(9.0).reshape(9, 1, 1, 1), torch.zeros(9, 0), units)
    rounds = batch.split(3)
    # A unit goes to the round of its first image (starts 0, 3, 4, 6 of 9 -> rounds 0, 1, 1, 2).
    assert [r.img.flatten().tolist() for r in rounds] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert [r.units.tolist() for r in rounds] == [[0, 0, 0], [0, 1, 1], [0, 0, 0]]
    empty = RealBatch(torch.zeros(0, 1, 1, 1), torch.zeros(0, 0), torch.zeros(0, dtype=torch.int64)).split(2)
    assert [len(r.img) for r in empty] == [0, 0]


def test_drawn_batches_load_the_sampled_indices():
    class Dataset:
        image_shape = [1, 2, 2]
        label_dim = 1

        def __getitem__(self, i):
            return np.full([1, 2, 2], 255 * (i % 2), np.uint8), np.array([i], np.float32)

    draws = iter(
        [
            SampledBatch(np.array([3, 4, 6]), np.array([0, 0, 1]), 2),
            SampledBatch(np.zeros(0, np.int64), np.zeros(0, np.int64), 0),
        ]
    )

    class Sampler:
        def sample(self):
            return next(draws)

    batches = DrawnBatches(Dataset(), Sampler(), torch.device("cpu"))
    first = next(batches)
    assert first.c.flatten().tolist() == [3, 4, 6] and first.units.tolist() == [0, 0, 1]
    assert first.img[:, 0, 0, 0].tolist() == [1.0, -1.0, -1.0]
    empty = next(batches)
    assert empty.img.shape == (0, 1, 2, 2) and empty.c.shape == (0, 1) and empty.units.shape == (0,)

"""The generator's labels: the official NumPy draw on the CPU, the same distribution drawn on the device."""

import numpy as np
import pytest
import torch

from training.fake_labels import DatasetLabels, fake_label_sampler, to_device


class LabelledSet:
    """Four images: three of class 0, one of class 1 (one-hot labels), or unlabelled (c_dim 0)."""

    def __init__(self, labelled: bool = True):
        self.labels = np.eye(2, dtype=np.float32)[[0, 0, 0, 1]] if labelled else np.zeros([4, 0], np.float32)

    def __len__(self) -> int:
        return len(self.labels)

    def get_label(self, idx: int) -> np.ndarray:
        return self.labels[idx].copy()


def test_cpu_draw_is_the_official_numpy_one():
    dataset = LabelledSet()
    np.random.seed(5)
    drawn = DatasetLabels(dataset, torch.device("cpu"))(6)
    np.random.seed(5)
    expected = np.stack([dataset.get_label(np.random.randint(4)) for _ in range(6)])
    assert drawn.dtype == torch.float32 and np.array_equal(drawn.numpy(), expected)


def test_device_draw_has_the_dataset_distribution_and_follows_the_torch_seed():
    dataset = LabelledSet()
    labels = DatasetLabels(dataset, torch.device("cpu"), on_device=True)
    n = 40_000
    torch.manual_seed(0)
    state = np.random.get_state()
    drawn = labels(n)
    assert drawn.shape == (n, 2) and drawn.dtype == torch.float32
    assert np.array_equal(np.random.get_state()[1], state[1])  # the NumPy stream is not touched
    assert torch.all(drawn.sum(1) == 1)  # every row is one of the dataset's one-hot labels
    # P(class 1) = 1/4; the binomial standard deviation of the frequency is sqrt(p(1-p)/n) ~ 0.0022: 5 sigma.
    assert abs(drawn[:, 1].mean().item() - 0.25) < 5 * np.sqrt(0.25 * 0.75 / n)
    torch.manual_seed(0)
    assert torch.equal(labels(n), drawn)


@pytest.mark.parametrize("on_device", [False, True])
def test_unlabelled_data_gives_empty_labels(on_device):
    assert DatasetLabels(LabelledSet(labelled=False), torch.device("cpu"), on_device=on_device)(3).shape == (3, 0)


def test_plugin_labels_reach_the_device_as_float32():
    sampler = fake_label_sampler(LabelledSet(), torch.device("cpu"), lambda n: np.ones([n, 2], dtype=np.float64))
    drawn = sampler(3)
    assert drawn.dtype == torch.float32 and torch.equal(drawn, torch.ones(3, 2))
    assert torch.equal(to_device(np.arange(4.0).reshape(2, 2), torch.device("cpu")), torch.tensor([[0.0, 1], [2, 3]]))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_draws_on_the_device_without_synchronising():
    labels = DatasetLabels(LabelledSet(), torch.device("cuda"))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        drawn = labels(1000)
        moved = to_device(np.ones([5, 2]), torch.device("cuda"))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert drawn.is_cuda and moved.is_cuda and torch.all(drawn.sum(1) == 1)

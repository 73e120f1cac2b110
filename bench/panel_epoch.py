"""Time one training epoch of each evaluator-panel member (spine.evaluation.panel.FULL_PANEL) on the CPU.

One epoch of `train_classifier` (training and the validation pass) on N random 32x32 images, members alternated
repeat by repeat in one process so that the ratios compare like with like; process CPU seconds (robust to other
jobs on a shared machine) and wall seconds, medians over --reps, and each member's CPU time against `resnet18`'s.
What sizes the benchmark's panel (docs/RESULTS.md, section K3).

    OMP_NUM_THREADS=1 python bench/panel_epoch.py [--images 2000] [--reps 3]
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import click
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout
from spine.classifier.data import LabelledImages  # noqa: E402
from spine.classifier.training import TrainOptions, train_classifier  # noqa: E402
from spine.evaluation.panel import FULL_PANEL  # noqa: E402


def random_images(count: int, seed: int) -> LabelledImages:
    """Random 32x32 images and labels: an epoch's cost does not depend on what the pixels show."""
    g = torch.Generator().manual_seed(seed)
    return LabelledImages(
        images=torch.randint(0, 256, (count, 1, 32, 32), generator=g, dtype=torch.uint8),
        labels=torch.randint(0, 2, (count,), generator=g),
        study_ids=[str(i) for i in range(count)],
        label_mode="abnormality",
        class_names=["normal", "abnormal"],
        source="random",
        sha256="random",
    )


@click.command()
@click.option("--images", type=click.IntRange(min=16), default=2000, show_default=True)
@click.option("--reps", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--seed", type=int, default=30, show_default=True)
def main(images: int, reps: int, seed: int) -> None:
    """One epoch per panel member, alternated; a Markdown table of medians and ratios to resnet18."""
    data = random_images(images, seed)
    cpu: dict[str, list[float]] = {m.name: [] for m in FULL_PANEL}
    wall: dict[str, list[float]] = {m.name: [] for m in FULL_PANEL}
    for _ in range(reps):
        for member in FULL_PANEL:
            options = TrainOptions(
                arch=member.arch, resolution=32, epochs=1, patience=1, seed=seed, input_norm=member.input_norm
            )
            start, start_cpu = time.time(), time.process_time()
            train_classifier(data, options)
            wall[member.name].append(time.time() - start)
            cpu[member.name].append(time.process_time() - start_cpu)
    base = statistics.median(cpu["resnet18:dataset"])
    click.echo(f"| member | CPU s per epoch ({images} images) | wall s | CPU / resnet18 |")
    click.echo("| --- | ---: | ---: | ---: |")
    for name in cpu:
        median = statistics.median(cpu[name])
        click.echo(f"| {name} | {median:.2f} | {statistics.median(wall[name]):.2f} | {median / base:.2f} |")


if __name__ == "__main__":
    main()  # pylint: disable=no-value-for-parameter

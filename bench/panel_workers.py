"""Time the downstream/panel classifiers trained one at a time (all cores) against `--workers` at a time (one thread
each, spine.evaluation.downstream.train_arms), on real datasets: what the benchmark's panel gains from `--parallel`.

The same models either way (the real one and one synthetic-only model per --synthetic, each `--epochs` epochs with
patience equal to the epochs, so every run trains all of them); wall seconds and models per minute, and the ratio
of the workers' rate to the one-at-a-time rate measured in the same run. Use the datasets of an experiment, e.g.:

    python bench/panel_workers.py --real runs/demo/data/train/train32.zip \\
        --synthetic runs/demo/synthesize/spinegan/synthetic.zip --synthetic ... [--member densenet121:dataset]
"""

from __future__ import annotations

import os
import sys
import time

import click
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout
from spine.evaluation.downstream import DownstreamOptions, train_arms  # noqa: E402
from spine.evaluation.panel import PanelMember  # noqa: E402


def timed_models(real: str, synthetic: dict[str, str], options: DownstreamOptions, workers: int) -> float:
    """Wall seconds to train the real and every synthetic-only model, `workers` at a time."""
    start = time.perf_counter()
    train_arms(real, synthetic, options, without_mixed=set(synthetic), workers=workers)
    return time.perf_counter() - start


@click.command()
@click.option("--real", required=True, type=click.Path(exists=True), help="Real training images (labelled)")
@click.option("--synthetic", "synthetic_paths", multiple=True, required=True, type=click.Path(exists=True))
@click.option("--member", default="densenet121:dataset", show_default=True, help="ARCH:NORM of the panel member")
@click.option("--epochs", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--workers", type=click.IntRange(min=2), default=2, show_default=True)
def main(real: str, synthetic_paths: tuple[str, ...], member: str, epochs: int, workers: int) -> None:
    panel_member = PanelMember.parse(member)
    options = DownstreamOptions(
        arch=panel_member.arch, input_norm=panel_member.input_norm, epochs=epochs, patience=epochs
    )
    synthetic = {f"arm{k}": path for k, path in enumerate(synthetic_paths)}
    models = 1 + len(synthetic)
    print(f"{member}: {models} models of {epochs} epochs; {torch.get_num_threads()} threads one at a time")
    one_at_a_time = timed_models(real, synthetic, options, workers=1)
    apart = timed_models(real, synthetic, options, workers=workers)
    print("| schedule | wall s | models per minute | against one at a time |")
    print("| --- | ---: | ---: | ---: |")
    for name, seconds in (("one at a time", one_at_a_time), (f"{workers} at a time, 1 thread each", apart)):
        print(f"| {name} | {seconds:.1f} | {60 * models / seconds:.2f} | {one_at_a_time / seconds:.2f}x |")


if __name__ == "__main__":
    main()

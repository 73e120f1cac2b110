"""What work beside a lone generator's training costs it, and what the work gets done: the pipeline's layout for the
demo (spine.pipeline.experiment.train_beside_ahead_steps) against the generator alone on every thread.

The generator is an experiment's own training command (its `train/<variant>` step record), shortened to `--kimg`;
the work beside it is a one-thread classifier (`--arch`, default ResNet-18, the panel's largest real arm) training
epoch after epoch on the experiment's training images until the generator ends. Layouts, timed one after the
other in one run: two threads alone (the baseline), one thread alone, one thread beside the classifier, and with
`--oversubscribed` two threads beside it (OpenMP's spinning threads then stall each other: capped by
`--stall-limit`). Per layout: the generator's seconds per kimg (median of the ticks after the first) and the
classifier's epochs per minute, with ratios against the baseline and the classifier alone.

    python bench/beside_training.py --experiment runs/demo --kimg 6
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

TICK = re.compile(r"^tick (\d+) .*sec/kimg ([\d.]+)")


def train_command(experiment: Path, outdir: str, kimg: int) -> list[str]:
    """The experiment's (lone) generator's train.py command, writing to `outdir`, `kimg` long, no snapshots."""
    records = sorted((experiment / "steps").glob("train--*.json"))
    if len(records) != 1:
        raise click.UsageError(f"{experiment}: expected one finished train step, found {len(records)}")
    command = json.loads(records[0].read_text())["outputs"]["command"]
    kept = [a for a in command[1:] if not a.startswith(("--outdir=", "--kimg=", "--snap="))]
    return [sys.executable, command[0], f"--outdir={outdir}", f"--kimg={kimg}", f"--snap={10**6}", *kept]


def generator_pace(command: list[str], threads: int, stall_limit: float) -> float:
    """Median seconds per kimg over the ticks after the first (inf when the first tick exceeds `stall_limit` s)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    paces, started = [], time.perf_counter()
    assert process.stdout is not None
    for line in process.stdout:
        match = TICK.match(line)
        if match and int(match.group(1)) >= 2:
            paces.append(float(match.group(2)))
        if not paces and time.perf_counter() - started > stall_limit:
            process.kill()
            process.wait()
            return float("inf")
    if process.wait() != 0:
        raise RuntimeError(f"{command[1]} failed with exit code {process.returncode}")
    return statistics.median(paces)


def train_epochs(data_path: str, arch: str, epochs_done: Any, stop: Any) -> None:
    """One-thread classifier training, one epoch a call, counting the epochs until `stop` is set."""
    # Set before tqdm's import, which reads it: the classifier's progress bars would break up the table's log.
    os.environ["TQDM_DISABLE"] = "1"
    import torch

    from spine.classifier.data import load_labelled_images
    from spine.classifier.training import TrainOptions, train_classifier

    torch.set_num_threads(1)
    data = load_labelled_images(data_path)
    seed = 0
    while not stop.is_set():
        train_classifier(data, TrainOptions(arch=arch, resolution=data.resolution, epochs=1, seed=seed))
        seed += 1
        with epochs_done.get_lock():
            epochs_done.value += 1


def epochs_per_minute(data_path: str, arch: str, run: Callable[[], Any]) -> tuple[float, Any]:
    """(the classifier's epochs per minute, run()'s result) with the classifier training beside run()."""
    context = multiprocessing.get_context("spawn")
    done, stop = context.Value("i", 0), context.Event()
    worker = context.Process(target=train_epochs, args=(data_path, arch, done, stop))
    worker.start()
    while done.value == 0:  # past its imports and first epoch: the layout is steady from here
        time.sleep(0.2)
    first, start = done.value, time.perf_counter()
    result = run()
    rate = (done.value - first) / (time.perf_counter() - start) * 60
    stop.set()
    worker.join()
    return rate, result


@click.command()
@click.option("--experiment", required=True, type=click.Path(exists=True, file_okay=False), help="Demo folder")
@click.option("--kimg", type=click.IntRange(min=3), default=6, show_default=True, help="Generator length per layout")
@click.option("--arch", default="resnet18", show_default=True, help="The classifier trained beside the generator")
@click.option("--oversubscribed", is_flag=True, help="Also time two generator threads beside the classifier")
@click.option("--stall-limit", type=click.FloatRange(min=10), default=120, show_default=True, help="Seconds")
def main(experiment: str, kimg: int, arch: str, oversubscribed: bool, stall_limit: float) -> None:
    root = Path(experiment)
    marker = root / "steps" / "data--train.json"
    if not marker.is_file():
        raise click.UsageError(
            f"{experiment}: not an experiment folder that has imported its training images ({marker})"
        )
    train_command(root, "", kimg)  # refuses a folder without one finished train step before anything runs
    data_path = json.loads(marker.read_text())["outputs"]["dataset"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:

        def pace(threads: int) -> float:
            print(f"generator on {threads} thread(s), {kimg} kimg ...", flush=True)
            return generator_pace(train_command(root, tempfile.mkdtemp(dir=tmp), kimg), threads, stall_limit)

        rows.append(("generator, two threads, alone (baseline)", pace(2), None))
        rows.append(("generator, one thread, alone", pace(1), None))
        print(f"{arch} alone, one thread, 60 s ...", flush=True)
        alone, _ = epochs_per_minute(data_path, arch, lambda: time.sleep(60))
        rows.append((f"{arch}, one thread, alone", None, alone))
        rate, result = epochs_per_minute(data_path, arch, lambda: pace(1))
        rows.append((f"generator, one thread, beside {arch}", result, rate))
        if oversubscribed:
            rate, result = epochs_per_minute(data_path, arch, lambda: pace(2))
            rows.append((f"generator, two threads, beside {arch}", result, rate))
    baseline = rows[0][1]
    print(f"\n{kimg} kimg per layout, ticks 2 on; {os.cpu_count()} cores\n")
    print("| layout | generator s/kimg | against the baseline | classifier epochs/min | against it alone |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, seconds, epochs in rows:
        gen = "" if seconds is None else ("stalled" if seconds == float("inf") else f"{seconds:.2f}")
        ratio = "" if seconds is None else f"{baseline / seconds:.2f}x"
        cls = "" if epochs is None else f"{epochs:.1f}"
        against = "" if epochs is None else f"{epochs / alone:.2f}x"
        print(f"| {name} | {gen} | {ratio} | {cls} | {against} |")


if __name__ == "__main__":
    main()  # pylint: disable=no-value-for-parameter

"""Steady-state speed and memory of a training run, from its stats.jsonl (one line per tick).

    python bench/steady_speed.py RUN_DIR [--skip 2]

Tick 0 is one iteration plus the start-up (imports, plugin builds, cuDNN autotuning) and tick 1 may still tune, so
the first `--skip` ticks are left out. Prints one line: the median sec/kimg of the remaining ticks and the largest
per-tick peak of GPU memory among them (the loop resets the peak at every tick, so the autotuning peak of tick 0 is
excluded, as NVIDIA's published memory figure excludes it). Exit status 1 when no tick is left.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import click


def steady_figures(stats_jsonl: Path, skip: int) -> tuple[float, float, int]:
    """(median sec/kimg, max peak GPU GB, ticks used) over the ticks after the first `skip`."""
    ticks = [json.loads(line) for line in stats_jsonl.read_text().splitlines() if line.strip()]
    steady = [t for t in ticks if t["Progress/tick"]["mean"] >= skip]
    if not steady:
        raise ValueError(f"{stats_jsonl}: {len(ticks)} tick(s), none after the first {skip}")
    sec_per_kimg = statistics.median(t["Timing/sec_per_kimg"]["mean"] for t in steady)
    peak_gpu = max(t["Resources/peak_gpu_mem_gb"]["mean"] for t in steady)
    return sec_per_kimg, peak_gpu, len(steady)


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--skip", type=click.IntRange(min=0), default=2, show_default=True, help="Start-up ticks left out")
def main(run_dir: str, skip: int) -> None:
    try:
        sec_per_kimg, peak_gpu, used = steady_figures(Path(run_dir) / "stats.jsonl", skip)
    except (OSError, ValueError, KeyError) as exc:
        print(f"{run_dir}: no steady figure ({exc})")
        sys.exit(1)
    print(f"{run_dir}: steady {sec_per_kimg:.2f} sec/kimg (median of {used} ticks), peak GPU memory {peak_gpu:.2f} GB")


if __name__ == "__main__":
    main()  # pylint: disable=no-value-for-parameter

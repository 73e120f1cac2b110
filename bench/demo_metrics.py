"""What the demo's metric steps cost: `metrics/<variant>` and `metrics/real-vs-real` as run_experiment calls them,
against the earlier demo's metric set (label fidelity by both judges) timed in the same run as the baseline.

Needs a demo experiment folder that has run up to its judge (data, classifier, judge steps) and any generator
snapshot of the demo preset (the cost does not depend on training). Real-image statistics go to a fresh folder, so
every Inception pass is timed cold.

    python bench/demo_metrics.py --experiment runs/demo \
        --network runs/demo/train/spinegan/latest/network-snapshot-000000.pkl
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from spine.pipeline.config import ExperimentConfig  # noqa: E402
from spine.pipeline.experiment import Judges, baseline_metrics, metrics_variant  # noqa: E402


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of fn()."""
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    fn()
    after = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter() - start, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


@click.command()
@click.option("--experiment", required=True, type=click.Path(exists=True, file_okay=False), help="Demo folder")
@click.option("--network", required=True, type=click.Path(exists=True, dir_okay=False), help="Generator snapshot")
def main(experiment: str, network: str) -> None:
    root = Path(experiment)
    steps = {p.stem: json.loads(p.read_text())["outputs"] for p in (root / "steps").glob("*.json")}
    config = ExperimentConfig.from_dict(json.loads((root / "config.json").read_text()))
    reference = steps.get("data--judge-halves", {}).get("b", steps["data--train"]["dataset"])
    judges = Judges(
        steps["classifier"]["classifier"], steps["data--train"]["dataset"], steps["judge"]["classifier"], reference
    )
    earlier = dataclasses.replace(config, metrics=tuple(m for m in config.metrics if m.startswith("label_fidelity")))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, run in (
            ("earlier metric set (baseline)", lambda w: metrics_variant(network, judges, earlier, w, print)),
            ("metrics/<variant>", lambda w: metrics_variant(network, judges, config, w, print)),
            (
                "metrics/real-vs-real",
                lambda w: baseline_metrics(judges, steps["data--test"]["dataset"], config, w, print),
            ),
        ):
            workdir = Path(tmp) / "metrics" / name.split("/")[-1].strip("<>")
            workdir.mkdir(parents=True)
            rows.append((name, *timed(lambda: run(workdir))))
    base = rows[0][1]
    print(f"\nmetrics {', '.join(config.metrics)}; load average {os.getloadavg()[0]:.1f}")
    print("| step | wall s | CPU s | wall / baseline |\n| --- | --- | --- | --- |")
    for name, wall, cpu in rows:
        print(f"| {name} | {wall:.1f} | {cpu:.1f} | {wall / base:.1f} |")


if __name__ == "__main__":
    main()  # pylint: disable=no-value-for-parameter

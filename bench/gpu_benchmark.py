"""The synthetic-learning benchmark with its generators trained on a GPU for a fixed wall time.

The benchmark (`spine.pipeline.demo` BENCHMARK: phantom data, classifiers, plain conditional StyleGAN2-ADA and
SpineGAN, synthesis, metrics, downstream table) costs about 70 minutes on 2 CPU cores, most of it in its two GAN
runs; a lent GPU has minutes. So the work is split by where it runs best:

    prepare  (CPU, before)  the experiment's data and classifier steps into OUTDIR (spine.pipeline.experiment)
    train    (GPU)          both generators side by side with --cfg=demo-gpu for SECONDS of wall time; each
                            variant's latest network snapshot is copied to SNAPSHOTS/<variant>/ (a few MB: they
                            come back from the GPU machine)
    finish   (CPU, after)   each variant's training step marked done with its snapshot, then the rest of the
                            experiment (synthesis, metrics, downstream, report); prints each arm's skill ratio
                            (AUC_syn - 0.5) / (AUC_real - 0.5) with its paired interval, and the plain ratio

`train` needs only OUTDIR/data/train/*.zip and OUTDIR/classifier/classifier.pkl (carry those two folders to the
GPU machine). `--tiny` is a seconds-long configuration for checking the three steps end to end on a CPU.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from spine.pipeline import experiment  # noqa: E402 (after the path set-up, for `python bench/gpu_benchmark.py`)
from spine.pipeline.arms import synthetic_arms  # noqa: E402
from spine.pipeline.config import PAPER_VARIANTS, ExperimentConfig  # noqa: E402
from spine.pipeline.demo import BENCHMARK  # noqa: E402
from spine.pipeline.steps import Steps  # noqa: E402

GPU_CFG = "demo-gpu"
# The paper's two arms, each scored by the whole panel; no pools, no curve (the runs end by wall time, not kimg)
CONFIG = dataclasses.replace(
    BENCHMARK, gan_cfg=GPU_CFG, variants=PAPER_VARIANTS, pools=(), panel_arms=(), curve_kimg=(), snap=5
)
# The CPU check of the mechanics: the demo preset (batch 16, no loader workers) is what a CPU runs in seconds.
TINY = dataclasses.replace(
    CONFIG,
    gan_cfg="demo",
    phantom_train=48,
    phantom_test=32,
    classifier_epochs=1,
    classifier_patience=1,
    synth_per_class=8,
    metrics=(),
    downstream_epochs=1,
    downstream_patience=1,
    n_resamples=20,
    report=False,
    independent_judge=False,
)


def config_for(tiny: bool) -> ExperimentConfig:
    return TINY if tiny else CONFIG


def prepare(outdir: Path, config: ExperimentConfig) -> None:
    """The experiment's first steps (phantom, imports, classifiers), as `run_experiment` names them, so that
    `finish` skips them."""
    experiment.prepare_data(config, outdir.resolve())


def train(outdir: Path, snapshots: Path, seconds: float, config: ExperimentConfig, runs_dir: Path) -> None:
    """Every variant's train.py side by side (one GPU) in `runs_dir`, stopped after `seconds`; copies each one's
    last snapshot and log to `snapshots`."""
    (train_zip,) = glob.glob(str(outdir / "data" / "train" / "*.zip"))
    classifier = str(outdir / "classifier" / "classifier.pkl")
    endless = dataclasses.replace(config, kimg=10**6)  # the wall time ends the runs, not the kimg
    runs = {}
    for variant in config.variants:
        workdir = runs_dir / variant.name
        workdir.mkdir(parents=True, exist_ok=True)
        cmd = experiment.train_command(variant, train_zip, classifier, endless, workdir)
        runs[variant.name] = (
            workdir,
            subprocess.Popen(cmd, stdout=open(workdir / "train.log", "w"), stderr=subprocess.STDOUT, cwd=REPO_ROOT),
        )
    deadline = time.time() + seconds
    for _workdir, process in runs.values():
        try:
            process.wait(timeout=max(deadline - time.time(), 0))
        except subprocess.TimeoutExpired:
            process.terminate()  # snapshots are written atomically: the last complete one stays
            process.wait()
    for name, (workdir, _) in runs.items():
        found = sorted(glob.glob(str(workdir / "*" / "network-snapshot-*.pkl")))
        ticks = [line for line in (workdir / "train.log").read_text().splitlines() if line.startswith("tick")]
        print(f"{name}: {len(ticks)} ticks; {ticks[-1] if ticks else 'no tick line'}")
        if not found:
            raise SystemExit(f"{name}: no network snapshot within {seconds:.0f} s (see {workdir / 'train.log'})")
        keep = snapshots / name
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy2(found[-1], keep)
        shutil.copy2(workdir / "train.log", keep)


def finish(outdir: Path, snapshots: Path, config: ExperimentConfig) -> None:
    """Mark each variant's training done with its snapshot from the GPU, run the rest, print the skill ratio."""
    steps = Steps(outdir)
    for variant in config.variants:
        (snapshot,) = sorted(glob.glob(str(snapshots / variant.name / "network-snapshot-*.pkl")))[-1:]
        steps.run(
            f"train/{variant.name}",
            lambda w: dict(run_dirs=[], snapshot=str(Path(snapshot).resolve()), command=["gpu_benchmark.py train"]),
        )
    out = experiment.run_experiment(config, outdir)
    down = out["downstream"]
    print(json.dumps(dict(aucs=down["aucs"], ratios=down["ratios"], skills=down["skills"]), indent=1))
    for arm in synthetic_arms(config, config.labels):
        skill, (low, high) = down["skills"][arm.key], down["skill_cis"][arm.key]
        print(
            f"skill ratio {arm.variant}: {skill:.3f} ({low:.3f}-{high:.3f}); plain ratio {down['ratios'][arm.key]:.3f}"
        )


@click.command()
@click.argument("step", type=click.Choice(["prepare", "train", "finish"]))
@click.option("--outdir", required=True, type=click.Path(file_okay=False), help="The experiment folder")
@click.option("--snapshots", type=click.Path(file_okay=False), help="train/finish: where the snapshots go/are")
@click.option("--seconds", type=float, default=240, show_default=True, help="train: wall time of the GAN runs")
@click.option(
    "--runs",
    default="/tmp/gpu_benchmark_runs",
    show_default=True,
    type=click.Path(file_okay=False),
    help="train: the GAN run directories (every snapshot; not brought back)",
)
@click.option("--tiny", is_flag=True, help="A seconds-long configuration, to check the steps on a CPU")
def main(step: str, outdir: str, snapshots: str | None, seconds: float, runs: str, tiny: bool) -> None:
    """prepare (CPU) -> train (GPU, fixed wall time) -> finish (CPU): the benchmark with GPU-trained generators."""
    config = config_for(tiny)
    if step != "prepare" and snapshots is None:
        raise click.UsageError(f"{step} needs --snapshots")
    if step == "prepare":
        prepare(Path(outdir).resolve(), config)
    elif step == "train":
        train(Path(outdir).resolve(), Path(snapshots).resolve(), seconds, config, Path(runs).resolve())
    else:
        finish(Path(outdir).resolve(), Path(snapshots).resolve(), config)


if __name__ == "__main__":
    main()  # pylint: disable=no-value-for-parameter

"""The paper's comparison as one resumable experiment: data -> classifier -> per generator variant (training,
synthesis, metrics) -> downstream table -> report.

    python -m spine.pipeline.experiment --config experiment.json --outdir runs/exp1
    python -m spine.pipeline.experiment --outdir runs/exp1 --kimg 200 --variants plain,spinegan   # options instead
    of a file

Variants share the data, the classifier, the seeds and every setting but their own (clinical-loss weight, extra
train.py options such as --dp), so differences in the table come from the variants. Each step writes
<outdir>/steps/<step>.json (its outputs, seconds taken) when it finishes; a restarted experiment skips finished
steps, a GAN run interrupted mid-way continues from its checkpoint.pt, and any other unfinished step starts over
in a clean folder. The config is stored as <outdir>/config.json; restarting with a different config is refused.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click

import dnnlib
from spine.evaluation.downstream import DownstreamOptions
from spine.evaluation.model_memo import ModelMemo
from spine.evaluation.panel import PanelMember
from spine.pipeline import curve
from spine.pipeline.arms import describe_arm, panel_variants, synthetic_arms, training_seed
from spine.pipeline.config import (
    DP_VARIANT,
    PAPER_VARIANTS,
    ExperimentConfig,
    Pool,
    Variant,
    classifier_options,
    downstream_options,
    load_config,
    panel_members,
)
from spine.pipeline.steps import REPO_ROOT, Steps, code_version, log_tail, run_logged
from spine.scoring import save_json

# ----------------------------------------------------------------------------------------------------------------
# The steps of an experiment.


def provenance(config: ExperimentConfig) -> dict[str, Any]:
    """What the figures of this experiment come from: the config's hash, its seeds and the code's commit (recorded
    when the experiment starts; a continued experiment keeps them, since its config cannot change)."""
    text = json.dumps(config.to_dict(), sort_keys=True)
    return dict(
        config_sha256=hashlib.sha256(text.encode()).hexdigest(),
        seed=config.seed,
        phantom_seed=config.draw_seed if config.source is None else None,
        **code_version(),
    )


def make_phantom(
    config: ExperimentConfig,
    workdir: Path,
    seed: int | None = None,
    num_test: int | None = None,
    num_train: int | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """The experiment's phantom draw, or another (`seed`, e.g. the public one) of the same kind; the same images
    whatever the `workers`."""
    from spine.phantom.tree import make_phantom_tree

    root = workdir / "vindr"
    summary = make_phantom_tree(
        str(root),
        config.phantom_train if num_train is None else num_train,
        config.phantom_test if num_test is None else num_test,
        seed=config.draw_seed if seed is None else seed,
        difficulty=config.phantom_difficulty,
        size=config.phantom_size,
        lesion_scale=config.phantom_lesion_scale,
        zoom=config.phantom_zoom,
        workers=workers,
    )
    return dict(root=str(root), summary=summary)


def import_split(
    source: str, split: str, config: ExperimentConfig, workdir: Path, labels: str | None = None
) -> dict[str, Any]:
    """spine.data.dataset_tool on one VinDr split, at the experiment's resolution and labels (or `labels`)."""
    from spine.data.dataset_tool import main as dataset_tool

    dest = workdir / f"{split}{config.resolution}.zip"
    dataset_tool.main(
        [
            "--source",
            source,
            "--dest",
            str(dest),
            "--split",
            split,
            "--resolution",
            str(config.resolution),
            "--labels",
            labels or config.labels,
        ],
        standalone_mode=False,
    )
    return dict(dataset=str(dest))


def train_classifier_step(
    train_zip: str, config: ExperimentConfig, workdir: Path, seed: int, member: PanelMember | None = None
) -> dict[str, Any]:
    """A frozen classifier (the clinical loss's and the metrics' judge, or the independent one: `member`'s
    architecture and normalisation), chosen on validation only."""
    from spine.classifier.artifact import save_classifier
    from spine.classifier.data import load_labelled_images
    from spine.classifier.training import train_classifier

    images = load_labelled_images(train_zip)
    result = train_classifier(images, classifier_options(config, images.resolution, seed, member))
    path = workdir / "classifier.pkl"
    save_classifier(path, result.net, result.spec, result.provenance)
    return dict(
        classifier=str(path), best_val_auc=result.provenance["best_val_auc"], best_epoch=result.provenance["best_epoch"]
    )


DP_JUDGE_DELTA = 1e-5  # the DP judge's own statement; composed into a run's account, the run's delta applies
DP_JUDGE_BATCH = 64  # expected (Poisson) batch of the DP judge


def dp_judge_key(epsilon: float, config: ExperimentConfig) -> str:
    """The step (and data key) of the DP judge at `epsilon`: 'dp_judge' for the experiment's own epsilon."""
    return "dp_judge" if epsilon == config.dp_judge_epsilon else f"dp_judge-eps{epsilon:g}"


def train_dp_judge_step(train_zip: str, config: ExperimentConfig, workdir: Path, epsilon: float) -> dict[str, Any]:
    """A clinical loss's judge of --dp=1 variants, trained with DP-SGD (spine.dp.judge) at `epsilon`, the network
    and normalisation of `config.dp_judge_options()`."""
    from spine.classifier.artifact import save_classifier
    from spine.classifier.data import load_labelled_images
    from spine.dp.judge import PrivateJudgeOptions, train_private_judge

    images = load_labelled_images(train_zip)
    options = PrivateJudgeOptions(
        epsilon=float(epsilon),
        delta=DP_JUDGE_DELTA,
        epochs=config.classifier_epochs,
        batch_size=DP_JUDGE_BATCH,
        resolution=images.resolution,
        seed=config.seed + 2,  # the classifier has seed, the independent judge seed + 1
        **config.dp_judge_options(),
    )
    result = train_private_judge(images, options)
    path = workdir / "classifier.pkl"
    save_classifier(path, result.net, result.spec, result.provenance)
    return dict(classifier=str(path), epsilon=result.provenance["privacy"]["epsilon"])


def trains_on_public_data(variant: Variant) -> bool:
    """A DP variant whose G and D train on the public images (train.py --dp-data-public=1)."""
    return variant.private and "--dp-data-public=1" in variant.train_args


# The public images of a phantom experiment's DP variants: the normal studies of another draw (`public_draw_seed`),
# which share no image or study with the experiment's and show no finding, so that whatever marks the abnormal class
# reaches a generator from the private images only (through the DP judge, or D's DP-SGD steps). Two uses:
# - --dp-data-public=1 variants train on them (D without DP; the DP judge is the only private access);
# - with `dp_public_pretrain_kimg`, a generator trained on them starts every other DP variant. It trains without DP
#   but with DP's networks and machinery (clipping and noise off, so the run is labelled NOT-DP), so that its D, built
#   without minibatch-std, fits the DP variants' D; every fake label is "normal", the only class the images show.
PUBLIC_CLASSES = ("normal",)


def public_dataset(steps: Steps, config: ExperimentConfig) -> str:
    """The public draw's phantom, imported, cut to its normal training images: the zip's path."""
    from spine.data.subset import write_classes

    phantom = steps.run("public/phantom", lambda w: make_phantom(config, w, config.public_draw_seed, num_test=0))
    every = steps.run("public/data-all", lambda w: import_split(phantom["root"], "train", config, w, "abnormality"))
    dest = "public.zip"
    return steps.run(
        "public/data",
        lambda w: dict(dataset=str(w / dest), images=write_classes(every["dataset"], str(w / dest), PUBLIC_CLASSES)),
    )["dataset"]


def public_pretrain_variant(config: ExperimentConfig, class_names: list[str]) -> Variant:
    prior = ",".join("1" if name in PUBLIC_CLASSES else "0" for name in class_names)
    dp_off = ("--aug=noaug", "--dp=1", "--dp-clip=0", "--dp-noise=0", f"--dp-label-prior={prior}")
    return Variant("public-pretrain", clinical_weight=0.0, train_args=dp_off, kimg=config.dp_public_pretrain_kimg)


def public_start(
    steps: Steps, config: ExperimentConfig, log: Callable[[str], None], env: dict[str, str] | None = None
) -> str | None:
    """The snapshot the DP variants start from (None without public pretraining): the generator trained on the
    public images."""
    if config.dp_public_pretrain_kimg is None:
        return None
    public = public_dataset(steps, config)
    class_names, _ = _dataset_classes(public)
    variant = public_pretrain_variant(config, class_names)
    trained = steps.run(
        "public/pretrain", lambda w: train_variant(variant, public, "", config, w, log, env), keep_partial=True
    )
    return trained["snapshot"]


# A DP-SGD iteration (per-sample gradients, clipping, noise) costs about 1.7 plain ones at the demo preset: the
# benchmark's DP generator trained 30 kimg in 520 s alone on one thread, the others 301-334 s two at a time
# (docs/PERFORMANCE.md, session 14).
DP_COST_PER_KIMG = 1.7


def training_cost(variant: Variant, config: ExperimentConfig) -> float:
    """A variant's training time in plain-kimg units: what schedules the longest first."""
    dp_sgd = variant.private and not trains_on_public_data(variant)
    return config.kimg_of(variant) * (DP_COST_PER_KIMG if dp_sgd else 1.0)


def clinical_judge(variant: Variant, mode_data: dict[str, str], config: ExperimentConfig) -> str:
    """The classifier a variant's clinical loss uses: its DP judge for a --dp=1 variant where one was trained."""
    epsilon = config.dp_judge_epsilon_of(variant)
    if epsilon is None:
        return mode_data["classifier"]
    return mode_data.get(dp_judge_key(epsilon, config), mode_data["classifier"])


def train_command(
    variant: Variant,
    train_zip: str,
    classifier: str,
    config: ExperimentConfig,
    workdir: Path,
    start: str | None = None,
    public_reals: str | None = None,
) -> list[str]:
    """The train.py command line of a variant; continues the latest checkpoint.pt of an interrupted attempt. `start`:
    a snapshot trained on public images that the variant starts from (declared public to the DP account);
    `public_reals`: the public images its D reads (`Variant.needs_public_reals`)."""
    cmd = [
        sys.executable,
        str(REPO_ROOT / "train.py"),
        f"--outdir={workdir}",
        f"--data={train_zip}",
        "--cond=1",
        f"--cfg={config.gan_cfg}",
        f"--kimg={config.kimg_of(variant)}",
        f"--snap={config.snap}",
        f"--seed={training_seed(config, variant)}",
        "--metrics=none",
    ]
    if variant.clinical_weight > 0:
        cmd += [f"--clinical-loss={classifier}", f"--clinical-weight={variant.clinical_weight:g}"]
    cmd += list(variant.train_args)
    if public_reals is not None:
        cmd.append(f"--dp-public-reals={public_reals}")
    checkpoints = sorted(glob.glob(str(workdir / "*" / "checkpoint.pt")))
    if checkpoints:
        cmd.append(f"--resume={checkpoints[-1]}")
    elif start is not None:
        cmd.append(f"--resume={start}")
    if start is not None:
        cmd.append("--dp-pretrain-public=1")
    return cmd


def training_env(parallel: int, reserved: int = 0) -> dict[str, str] | None:
    """The environment of one of `parallel` concurrent train.py processes: the CPU cores but `reserved` (for work
    beside the training) shared out as threads (small iterations keep one thread per run busier than two threads on
    one run: docs/PERFORMANCE.md, "Generators side by side"). A single run on every core, or a thread count the user
    set, keeps the inherited environment."""
    if (parallel == 1 and reserved == 0) or "OMP_NUM_THREADS" in os.environ:
        return None
    return dict(os.environ, OMP_NUM_THREADS=str(max(1, ((os.cpu_count() or 1) - reserved) // parallel)))


def train_variant(
    variant: Variant,
    train_zip: str,
    classifier: str,
    config: ExperimentConfig,
    workdir: Path,
    log: Callable[[str], None],
    env: dict[str, str] | None = None,
    start: str | None = None,
    public_reals: str | None = None,
) -> dict[str, Any]:
    cmd = train_command(variant, train_zip, classifier, config, workdir, start, public_reals)
    run_logged(
        cmd,
        workdir / "train.log",
        lambda line: line.startswith(("tick", "Error", "Resumed")),
        lambda line: log(f"[train/{variant.name}] {line}"),
        env,
    )
    run_dirs = sorted(p for p in workdir.iterdir() if p.is_dir() and not p.is_symlink())  # not train.py's 'latest'
    snapshots = sorted(glob.glob(str(run_dirs[-1] / "network-snapshot-*.pkl")))
    if not snapshots:
        raise RuntimeError(f"{run_dirs[-1]}: training finished without a network snapshot")
    return dict(run_dirs=[str(p) for p in run_dirs], snapshot=snapshots[-1], command=cmd[1:])


def synthesize_variant(
    snapshots: Sequence[str], class_names: list[str], label_mode: str, config: ExperimentConfig, workdir: Path
) -> dict[str, Any]:
    """The synthetic dataset of one generator: `synth_per_class` images per class, drawn in turn from `snapshots`
    (one, or a trajectory pool's)."""
    if isinstance(snapshots, str):  # a str is a Sequence[str] too: one path would be read as one file per character
        raise TypeError(f"synthesize_variant takes a list of snapshot paths, got the string {snapshots!r}")
    import torch

    from spine.evaluation import synthesize

    local = config.synth_local_difference if label_mode == "abnormality" else None  # lesion types have no normal
    generators, provenance, _kwargs = synthesize.load_snapshots(
        snapshots, torch.device("cpu"), local, config.synth_trunc, config.synth_noise_mode
    )
    counts = [config.synth_per_class] * len(class_names)
    plan = synthesize.SynthesisPlan.from_counts(counts, config.seed, len(generators), config.synth_twins)
    dest = workdir / "synthetic.zip"
    synthesize.write_synthetic_dataset(
        generators,
        plan,
        str(dest),
        class_names,
        label_mode,
        provenance,
        dict(
            per_class=config.synth_per_class,
            seed=config.seed,
            local_difference=config.synth_local_difference,
            noise_mode=config.synth_noise_mode,
            twins=config.synth_twins,
        ),
        truncation_psi=config.synth_trunc,
        noise_mode=config.synth_noise_mode,
    )
    return dict(dataset=str(dest), snapshots=list(snapshots))


def pool_step(pool: Pool, synthetic: dict[str, str], workdir: Path) -> dict[str, Any]:
    """The members' synthetic datasets as one (spine.evaluation.pooling)."""
    from spine.evaluation.pooling import pool_datasets

    dest = workdir / "synthetic.zip"
    meta = pool_datasets({member: synthetic[member] for member in pool.members}, str(dest))["spinegan"]
    return dict(dataset=str(dest), members=list(pool.members), num_images=meta["num_images"])


def matched_pool_step(pool_zip: str, config: ExperimentConfig, workdir: Path) -> dict[str, Any]:
    """The pool at one member's image count: `synth_per_class` images per class drawn from it (seeded)."""
    from spine.evaluation.pooling import subsample_dataset

    dest = workdir / "synthetic.zip"
    meta = subsample_dataset(pool_zip, str(dest), config.synth_per_class, config.seed)["spinegan"]
    return dict(dataset=str(dest), subsampled_from=pool_zip, num_images=meta["num_images"])


def matched_comparisons(config: ExperimentConfig) -> list[tuple[str, tuple[str, ...]]]:
    """Per pool of the experiment's label mode, (left, right arms averaged): the pool against its members' mean, at
    the members' image count against the full pool and the members' mean, and the long generator (one generator
    trained for the members' combined kimg) against the pool and the members' mean."""
    comparisons: list[tuple[str, tuple[str, ...]]] = []
    for pool in (p for p in config.pools if config.mode_of(p.name) == config.labels):
        comparisons.append((pool.name, pool.members))
        if config.pool_matched:
            comparisons += [(pool.name, (pool.matched_name,)), (pool.matched_name, pool.members)]
        if pool.long_generator is not None:
            comparisons += [(pool.name, (pool.long_generator,)), (pool.long_generator, pool.members)]
            if config.pool_matched:
                comparisons.append((pool.matched_name, (pool.long_generator,)))
    return comparisons


def matched_step(downstream_dir: str, test_zip: str, config: ExperimentConfig, workdir: Path) -> dict[str, Any]:
    """Paired test-set differences (spine.evaluation.comparison) between each pool and its matched arms: the same
    resamples of the test studies for every arm, as the downstream table's."""
    from spine.classifier.data import load_labelled_images
    from spine.evaluation.comparison import arm_scores, arms_to_score, markdown_table, paired_differences

    comparisons = matched_comparisons(config)
    test = load_labelled_images(test_zip)
    scores = arm_scores(downstream_dir, arms_to_score(downstream_dir, comparisons), test)
    rows = paired_differences(test.labels.numpy(), scores, comparisons, config.n_resamples, config.seed, test.study_ids)
    for row in rows:
        row["left_is"] = describe_arm(config, row["left"])
        row["right_is"] = [describe_arm(config, name) for name in row["right"]]
    save_json(rows, str(workdir / "matched.json"))
    with dnnlib.atomic_write(workdir / "matched.md", "w") as f:
        f.write(markdown_table(rows))
    return dict(json=str(workdir / "matched.json"), markdown=str(workdir / "matched.md"), rows=rows)


INDEPENDENT = "independent_"  # prefix of the results of the independent judge


@dataclasses.dataclass(frozen=True)
class Judges:
    """Who judges the metrics and against which real images: the clinical loss's classifier against the training
    images; the independent judge (None: none) against `reference`, the training images it never saw (half B with
    `judge_half`, else all of them)."""

    classifier: str
    train: str
    independent: str | None = None
    reference: str | None = None

    def runs(self, metrics: list[str]) -> list[tuple[str, str, str, str]]:
        """(metric, classifier, real images, result prefix): every metric, then those in a classifier's space
        (label fidelity, *_spine) again by the independent judge."""
        from metrics.metric_names import parse_metric

        runs = [(metric, self.classifier, self.train, "") for metric in metrics]
        if self.independent is not None and self.reference is not None:
            runs += [
                (metric, self.independent, self.reference, INDEPENDENT)
                for metric in metrics
                if parse_metric(metric).space == "spine"
            ]
        return runs


def metrics_variant(
    snapshot: str,
    judges: Judges,
    config: ExperimentConfig,
    workdir: Path,
    log: Callable[[str], None],
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """Every configured metric against the real training images; a metric that cannot run says why.

    With an independent judge, the metrics in a classifier's space run again with it (results prefixed
    'independent_'). Real-image statistics are cached in `cache_dir` (default <outdir>/metrics/real-stats), so later
    variants and the real-vs-real baseline reuse the first one's; within the step every metric shares each set's
    features.
    """
    from training.serialization import load_generator

    G = load_generator(snapshot, "cpu").eval()
    return _calc_metrics(judges.runs(list(config.metrics)), dict(G=G), config, workdir, log, "metric", cache_dir)


def _calc_metrics(
    runs: list[tuple[str, str, str, str]],
    evaluated: dict[str, Any],
    config: ExperimentConfig,
    workdir: Path,
    log: Callable[[str], None],
    what: str,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """calc_metric of each (metric, classifier, real images, prefix) on the `evaluated` set (G=, or dataset2_kwargs=),
    with one feature memo for all; results and errors keyed by prefixed result names."""
    import spine.evaluation.classifier_metrics  # noqa: F401 (registers the *_spine and label_fidelity metrics)
    from metrics import metric_main

    dataset = dict(class_name="training.dataset.ImageFolderDataset", use_labels=True)
    memo: dict[str, Any] = {}
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for metric, judged_by, real, prefix in runs:
        try:
            line = metric_main.calc_metric(
                metric,
                dataset_kwargs=dict(dataset, path=real),
                classifier=judged_by,
                seed=config.seed,
                cache_dir=str(cache_dir or workdir.parent / "real-stats"),
                feature_memo=memo,
                **evaluated,
            )
        except (OSError, ValueError, RuntimeError) as exc:  # e.g. no detector weights offline
            errors[prefix + metric] = f"{type(exc).__name__}: {exc}"
            log(f"{what} {prefix + metric} not computed: {errors[prefix + metric]}")
            continue
        line["results"] = {prefix + key: value for key, value in line["results"].items()}
        line["metric"] = prefix + line["metric"]
        metric_main.report_metric(line, str(workdir))
        results.update(line["results"])
    return dict(results=results, errors=errors)


def curve_steps(
    steps: Steps,
    config: ExperimentConfig,
    out: dict[str, Any],
    data: dict[str, dict[str, str]],
    judges: Judges,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """'curve/<variant>' per generator of the training curves (spine.pipeline.curve), then 'curve': the summary over
    seeds, paired by seed, with kimg-to-threshold. Nothing without `curve_kimg`."""
    variants = curve.curve_variants(config)
    if not variants:
        return {}
    main = data[config.labels]
    folders = curve.curve_member_folders(
        config, str(Path(out["downstream"]["json"]).parent), str(steps.workdir("panel")) if "panel" in out else None
    )
    results: dict[str, Any] = {}
    for variant in variants:
        run_dirs = out[f"train/{variant.name}"]["run_dirs"]
        results[f"curve/{variant.name}"] = steps.run(
            f"curve/{variant.name}", lambda w: curve_step(run_dirs, main, judges, folders, config, w, log)
        )

    def summary(workdir: Path) -> dict[str, Any]:
        figures = curve.summarize_curve(results, config)
        return dict(curve.write_curve(figures, workdir), summary=figures)

    results["curve"] = steps.run("curve", summary)
    return results


def curve_step(
    run_dirs: list[str],
    main: dict[str, str],
    judges: Judges,
    folders: dict[str, str],
    config: ExperimentConfig,
    workdir: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """One generator's curve: at each of `curve_kimg`, its snapshot's synthetic set (the same latents and counts as
    the final synthesis), the curve metrics and each curve member's synthetic-only skill ratio."""
    from spine.classifier.data import load_labelled_images

    test = load_labelled_images(main["test"])
    real = curve.real_aucs(folders, test)
    class_names, label_mode = _dataset_classes(main["train"])
    metric_config = dataclasses.replace(config, metrics=config.curve_metrics)
    points = []
    for kimg in config.curve_kimg:
        snapshot, at = curve.snapshot_at(run_dirs, kimg)
        point_dir = workdir / f"kimg{kimg:06d}"
        point_dir.mkdir()
        synthetic = synthesize_variant([snapshot], class_names, label_mode, config, point_dir)["dataset"]
        measured = metrics_variant(
            snapshot,
            judges,
            metric_config,
            point_dir,
            log,
            cache_dir=workdir.parents[1] / "metrics" / "real-stats",
        )
        figures = curve.overall_figures(measured["results"])
        figures.update(curve.member_skills(synthetic, test, real, downstream_options(config)))
        points.append(dict(kimg=kimg, snapshot_kimg=at, snapshot=snapshot, figures=figures, errors=measured["errors"]))
    return dict(real_auc=real, points=points)


def dataset_metrics(
    judges: Judges,
    images: str,
    config: ExperimentConfig,
    workdir: Path,
    log: Callable[[str], None],
    what: str,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """The configured metrics that have a form for a set of images (FID, KID, precision/recall, class difference),
    of the images in `images` against the real training (or the independent judge's reference) images."""
    dataset2 = dict(class_name="training.dataset.ImageFolderDataset", use_labels=True, path=images)
    runs = judges.runs(baseline_metric_names(config))
    return _calc_metrics(runs, dict(dataset2_kwargs=dataset2), config, workdir, log, what, cache_dir)


def baseline_metrics(
    judges: Judges, test_zip: str, config: ExperimentConfig, workdir: Path, log: Callable[[str], None]
) -> dict[str, Any]:
    """The set metrics of the real test images at the same counts: what two real samples of one distribution score,
    which gives every generator's value its scale."""
    return dataset_metrics(judges, test_zip, config, workdir, log, "baseline")


def synthetic_set_metrics(
    judges: Judges, synthetic_zip: str, config: ExperimentConfig, workdir: Path, log: Callable[[str], None]
) -> dict[str, Any]:
    """The set metrics of a trajectory pool's own images, the set the downstream classifiers learn from: its final
    snapshot's metrics say little of it (a final snapshot narrowed to few modes, as DP runs do, can be pooled with
    earlier ones that draw others). The pool holds the same number of images per class, where a generator's metrics
    draw labels in the training set's proportions."""
    real_stats = workdir.parents[1] / "metrics" / "real-stats"  # the generators' metrics cached them
    return dataset_metrics(judges, synthetic_zip, config, workdir, log, "set metric", real_stats)


def baseline_metric_names(config: ExperimentConfig) -> list[str]:
    """The configured metrics that have a form for a set of images (all but label fidelity, which conditions G)."""
    from metrics.metric_names import parse_metric

    return [metric for metric in config.metrics if parse_metric(metric).kind in ("fid", "kid", "pr", "class_diff")]


# ----------------------------------------------------------------------------------------------------------------
# The experiment.


PreparedData = tuple["Steps", dict[str, Any], dict[str, dict[str, str]], "Judges"]


def prepare_data(config: ExperimentConfig, outdir: Path, log: Callable[[str], None] = print) -> PreparedData:
    """The steps before any generator (phantom, train/test import and classifier per label mode, the independent
    judge): returns (steps, their outputs, {label mode: train/test/classifier paths}, the main label mode's judges)."""
    for directory in (outdir, outdir / "steps"):  # temp files of a restart killed mid-write (config, markers)
        dnnlib.remove_stale_temp_files(directory)
    _check_same_config(config, outdir)
    steps = Steps(outdir, log)
    out: dict[str, Any] = {"provenance": steps.run("provenance", lambda w: provenance(config))}
    source = config.source
    if source is None:
        out["phantom"] = steps.run("phantom", lambda w: make_phantom(config, w))
        source = out["phantom"]["root"]
    modes = [config.labels] + sorted({v.labels for v in config.variants} - {None, config.labels})
    data: dict[str, dict[str, str]] = {}
    for mode in modes:
        suffix = "" if mode == config.labels else f"-{mode}"
        data[mode] = dict(
            train=steps.run(f"data/train{suffix}", lambda w: import_split(source, "train", config, w, mode))["dataset"],
            test=steps.run(f"data/test{suffix}", lambda w: import_split(source, "test", config, w, mode))["dataset"],
        )
        out[f"classifier{suffix}"] = steps.run(
            f"classifier{suffix}", lambda w: train_classifier_step(data[mode]["train"], config, w, config.seed)
        )
        data[mode]["classifier"] = out[f"classifier{suffix}"]["classifier"]
    for epsilon in config.dp_judge_epsilons():
        key = dp_judge_key(epsilon, config)
        train = data[config.labels]["train"]
        out[key] = steps.run(key, lambda w, e=epsilon, t=train: train_dp_judge_step(t, config, w, e))
        data[config.labels][key] = out[key]["classifier"]
    main = data[config.labels]
    judges = Judges(main["classifier"], main["train"])
    if config.independent_judge:
        judge_train = reference = main["train"]
        if config.judge_half:
            out["data/judge-halves"] = steps.run("data/judge-halves", lambda w: judge_halves(main["train"], config, w))
            judge_train, reference = out["data/judge-halves"]["a"], out["data/judge-halves"]["b"]
        member = None if config.judge is None else PanelMember.parse(config.judge)
        out["judge"] = steps.run(
            "judge", lambda w: train_classifier_step(judge_train, config, w, config.seed + 1, member)
        )
        judges = dataclasses.replace(judges, independent=out["judge"]["classifier"], reference=reference)
    return steps, out, data, judges


def class_reference_step(config: ExperimentConfig, workdir: Path, workers: int = 1) -> dict[str, Any]:
    """`class_reference` fresh phantom images of the experiment's kind (its own draw, `class_reference_seed`),
    imported as the training split is: the real side of the class-mean figures."""
    root = make_phantom(
        config, workdir, config.class_reference_seed, num_test=0, num_train=config.class_reference, workers=workers
    )
    dataset = import_split(root["root"], "train", config, workdir)["dataset"]
    shutil.rmtree(root["root"])  # the DICOMs: the import is all that is read
    return dict(dataset=dataset, seed=config.class_reference_seed, images=config.class_reference)


def class_means_step(reference: str, sets: dict[str, str], workdir: Path) -> dict[str, Any]:
    """spine.evaluation.class_means.reference_figures of each set against the reference, as JSON and a table, and
    every class mean (class-means.npz, which the report draws)."""
    from spine.evaluation.class_means import markdown_table, reference_figures

    figures = reference_figures(reference, sets, workdir / "class-means.npz")
    save_json(figures, str(workdir / "class-means.json"))
    with dnnlib.atomic_write(workdir / "class-means.md", "w") as f:
        f.write(markdown_table(figures))
    return dict(
        json=str(workdir / "class-means.json"),
        markdown=str(workdir / "class-means.md"),
        means=str(workdir / "class-means.npz"),
        figures=figures,
    )


def judge_halves(train_zip: str, config: ExperimentConfig, workdir: Path) -> dict[str, Any]:
    """The training images in two study-disjoint halves (spine.data.halves): A trains the independent judge, B is
    what it measures against."""
    from spine.data.halves import write_halves

    paths = dict(a=str(workdir / "judge-train.zip"), b=str(workdir / "judge-reference.zip"))
    sizes = write_halves(train_zip, paths["a"], paths["b"], seed=config.seed)
    return dict(paths, sizes=sizes)


def real_arm_options(config: ExperimentConfig) -> dict[str, DownstreamOptions]:
    """{table: options} of every real-arm model the experiment trains on its training images: the downstream
    protocol's ('downstream') and each panel member's but the protocol's own (which reuses the downstream table)."""
    options = downstream_options(config)
    members = [m for m in panel_members(config) if m != own_panel_member(config)] if config.panel else []
    return {
        "downstream": options,
        **{m.name: dataclasses.replace(options, arch=m.arch, input_norm=m.input_norm) for m in members},
    }


def own_panel_member(config: ExperimentConfig) -> PanelMember | None:
    """The panel member that is the downstream protocol's own classifier (its models are the downstream table's)."""
    options = downstream_options(config)
    return next(
        (m for m in panel_members(config) if (m.arch, m.input_norm) == (options.arch, options.input_norm)), None
    )


def real_arms_step(train_zip: str, config: ExperimentConfig, workdir: Path) -> dict[str, Any]:
    """Every real-arm model (`real_arm_options`) trained into a ModelMemo in `workdir`, from which the downstream
    and panel steps take them."""
    from spine.classifier.data import load_labelled_images
    from spine.classifier.training import train_classifier

    real = load_labelled_images(train_zip)
    memo = ModelMemo(workdir)
    models = {}
    for table, options in real_arm_options(config).items():
        train_options = options.train_options(real.resolution)
        models[table] = str(memo.put([real], train_options, train_classifier(real, train_options)))
    return dict(memo=str(workdir), models=models)


def ahead_steps(
    steps: Steps,
    config: ExperimentConfig,
    data: dict[str, dict[str, str]],
    judges: Judges,
    log: Callable[[str], None],
    workers: int = 1,
    real_arms: bool = True,
) -> dict[str, Any]:
    """The steps that no generator's images enter: the class-mean reference, the real-vs-real baseline of the set
    metrics (its Inception features of the training images are cached for the generators' metrics) and, with
    `real_arms`, the real arms of the downstream table and panel. `workers`: processes for the class reference's
    phantom."""
    out: dict[str, Any] = {}
    main = data[config.labels]
    if config.class_reference:
        out["data/class-reference"] = steps.run(
            "data/class-reference", lambda w: class_reference_step(config, w, workers)
        )
    if baseline_metric_names(config):
        out["metrics/real-vs-real"] = steps.run(
            "metrics/real-vs-real", lambda w: baseline_metrics(judges, main["test"], config, w, log)
        )
    if real_arms:
        out["real-arms"] = steps.run("real-arms", lambda w: real_arms_step(main["train"], config, w))
    return out


def _ahead_steps_on_one_thread(
    config: ExperimentConfig, outdir: Path, data: dict[str, dict[str, str]], judges: Judges, log_path: Path
) -> None:
    """`ahead_steps` in a process of its own, on one thread, everything it prints to `log_path` (beside the
    training's tick lines, its progress bars would break them)."""
    import torch

    with open(log_path, "a") as log_file:
        os.dup2(log_file.fileno(), sys.stdout.fileno())
        os.dup2(log_file.fileno(), sys.stderr.fileno())
    torch.set_num_threads(1)
    ahead_steps(Steps(outdir, _print_flushed), config, data, judges, _print_flushed)


def _print_flushed(text: str) -> None:
    print(text, flush=True)


def train_beside_ahead_steps(
    steps: Steps,
    config: ExperimentConfig,
    data: dict[str, dict[str, str]],
    judges: Judges,
    log: Callable[[str], None],
    parallel: int,
    public: str | None = None,
) -> dict[str, Any]:
    """`train_variants` and `ahead_steps`. A lone generator trains on one core fewer while a one-thread process runs
    the ahead steps on the core it leaves (its log: <outdir>/ahead-steps.log): a 32x32 iteration keeps its second
    thread only partly busy (the demo's generator: 9.4 against 7.5 s/kimg, docs/PERFORMANCE.md), and the ahead
    steps then cost no wall time after the training. Several generators keep the cores busy: the ahead steps then
    run first, on every core, but for the real arms, which the downstream and panel steps train beside their other
    models (`parallel` at a time, one thread each: more models per minute than one model on two threads)."""
    if len(config.variants) > 1 or (os.cpu_count() or 1) < 2:
        ahead = ahead_steps(steps, config, data, judges, log, workers=min(2, os.cpu_count() or 1), real_arms=False)
        return {**ahead, **train_variants(steps, config, data, log, parallel, public)}
    import multiprocessing

    log_path = steps.outdir / "ahead-steps.log"
    log(f"[ahead steps] the steps no generator enters run beside the training, one thread (log: {log_path})")
    process = multiprocessing.get_context("spawn").Process(
        target=_ahead_steps_on_one_thread, args=(config, steps.outdir, data, judges, log_path), name="ahead-steps"
    )
    process.start()
    try:
        trained = train_variants(steps, config, data, log, parallel, public, reserved=1)
        process.join()
    finally:
        if process.is_alive():  # the training failed or was interrupted: the steps beside it stop too
            process.terminate()
            process.join()
    if process.exitcode != 0:
        raise RuntimeError(
            f"the steps beside the training failed (exit code {process.exitcode}); see {log_path}. Last lines:\n"
            + log_tail(log_path)
        )
    return {**ahead_steps(steps, config, data, judges, log), **trained}  # read back from their markers


def run_experiment(
    config: ExperimentConfig, outdir: str | Path, log: Callable[[str], None] = print, parallel: int = 1
) -> dict[str, Any]:
    """Run (or continue) every step; returns {step name: outputs} plus timings.

    Variants conditioned on another label mode than the experiment's (e.g. the lesion-type model) get that mode's
    data, classifier and downstream table ('data/train-lesion', 'classifier-lesion', 'downstream-lesion'). Pools
    ('pool/<name>') join their members' downstream table as one more synthetic arm, and so do their matched arms
    ('pool/<name>-matched': one member's image count); 'matched' compares each pool with its matched arms. With
    `curve_kimg`, 'curve/<variant>' scores the clinical-loss pair's generators at earlier snapshots and 'curve' pairs
    them by seed (spine.pipeline.curve).
    The generators train `parallel` at a time, and so do the downstream and panel classifiers (one thread each): a
    matter of scheduling, the results do not depend on it beyond the float-summation order of the thread count.
    """
    if parallel < 1:
        raise ValueError(f"parallel: expected at least 1 training at a time, got {parallel}")
    outdir = Path(outdir).resolve()
    steps, out, data, judges = prepare_data(config, outdir, log)
    modes = list(data)
    synthetic: dict[str, dict[str, str]] = {mode: {} for mode in modes}
    if any(trains_on_public_data(v) or v.needs_public_reals for v in config.variants):
        data[config.labels]["public"] = public_dataset(steps, config)
    start = public_start(steps, config, log)
    out.update(train_beside_ahead_steps(steps, config, data, judges, log, parallel, start))
    memo = ModelMemo(out["real-arms"]["memo"]) if "real-arms" in out else None
    for variant in config.variants:
        name, mode = variant.name, config.mode_of(variant.name)
        train_zip, classifier = data[mode]["train"], data[mode]["classifier"]
        class_names, label_mode = _dataset_classes(train_zip)
        trained = out[f"train/{name}"]
        snapshots = curve.last_snapshots(trained["run_dirs"], config.synth_snapshots_of(variant))
        synthetic[mode][name] = steps.run(
            f"synthesize/{name}", lambda w: synthesize_variant(snapshots, class_names, label_mode, config, w)
        )["dataset"]
        mode_judges = judges if mode == config.labels else Judges(classifier, train_zip)
        out[f"metrics/{name}"] = steps.run(
            f"metrics/{name}", lambda w: metrics_variant(trained["snapshot"], mode_judges, config, w, log)
        )
        if len(snapshots) > 1 and baseline_metric_names(config):
            out[f"set-metrics/{name}"] = steps.run(
                f"set-metrics/{name}",
                lambda w: synthetic_set_metrics(mode_judges, synthetic[mode][name], config, w, log),
            )
        if config.privacy_audit:
            out[f"privacy/{name}"] = steps.run(
                f"privacy/{name}",
                lambda w: privacy_step(trained["snapshot"], train_zip, data[mode]["test"], classifier, config, w),
            )
    for pool in config.pools:
        datasets = synthetic[config.mode_of(pool.name)]  # the pool becomes one of its mode's synthetic arms
        out[f"pool/{pool.name}"] = steps.run(f"pool/{pool.name}", lambda w: pool_step(pool, datasets, w))
        datasets[pool.name] = out[f"pool/{pool.name}"]["dataset"]
        if config.pool_matched:
            key = f"pool/{pool.matched_name}"
            out[key] = steps.run(key, lambda w: matched_pool_step(datasets[pool.name], config, w))
            datasets[pool.matched_name] = out[key]["dataset"]
    if config.class_reference:
        main = data[config.labels]
        sets = {"real training images": main["train"], "real test images": main["test"], **synthetic[config.labels]}
        reference = out["data/class-reference"]["dataset"]
        out["class-means"] = steps.run("class-means", lambda w: class_means_step(reference, sets, w))
    options = downstream_options(config)
    pooled = [arm.variant for mode in modes for arm in synthetic_arms(config, mode) if arm.pool]
    for mode in modes:
        key = "downstream" if mode == config.labels else f"downstream-{mode}"
        out[key] = steps.run(
            key,
            lambda w: _downstream(
                data[mode]["train"], synthetic[mode], data[mode]["test"], w, options, pooled, parallel, memo
            ),
        )
    main = data[config.labels]
    if matched_comparisons(config) and config.labels == "abnormality":  # paired AUCs need a binary task
        out["matched"] = steps.run(
            "matched", lambda w: matched_step(str(Path(out["downstream"]["json"]).parent), main["test"], config, w)
        )
    if config.panel:
        out["panel"] = steps.run(
            "panel",
            lambda w: panel_step(
                main["train"],
                synthetic[config.labels],
                main["test"],
                out["downstream"]["json"],
                config,
                w,
                parallel,
                memo,
            ),
            keep_partial=True,  # finished members are kept (`train_panel` skips them)
        )
    out.update(curve_steps(steps, config, out, data, judges, log))
    if config.report:
        from spine.pipeline.report import write_experiment_report

        out["report"] = steps.run("report", lambda w: dict(report=str(write_experiment_report(outdir, w))))
    out["timings"] = steps.timings
    return out


def train_variants(
    steps: Steps,
    config: ExperimentConfig,
    data: dict[str, dict[str, str]],
    log: Callable[[str], None],
    parallel: int,
    public: str | None = None,
    reserved: int = 0,
) -> dict[str, dict[str, Any]]:
    """{'train/<name>': outputs} of every variant, `parallel` trainings at a time (each resumes its checkpoint), the
    longest (`training_cost`) first: a long one started last would train alone while the other cores idle. `public`:
    the public start of the --dp=1 variants of the abnormality labels (`public_start`); `reserved`: cores left to
    work beside the trainings."""
    env = training_env(min(parallel, len(config.variants)), reserved)  # a lone training keeps every core but those

    def train(variant: Variant) -> tuple[str, dict[str, Any]]:
        label_mode = config.mode_of(variant.name)
        mode = data[label_mode]
        on_public = trains_on_public_data(variant)
        start = public if variant.private and not on_public and label_mode == "abnormality" else None
        images = mode["public"] if on_public else mode["train"]
        reals = mode["public"] if variant.needs_public_reals else None
        judge = clinical_judge(variant, mode, config)
        return f"train/{variant.name}", steps.run(
            f"train/{variant.name}",
            lambda w: train_variant(variant, images, judge, config, w, log, env, start, reals),
            keep_partial=True,
        )

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        return dict(pool.map(train, sorted(config.variants, key=lambda v: -training_cost(v, config))))


def privacy_step(
    snapshot: str, train_zip: str, heldout_zip: str, classifier: str, config: ExperimentConfig, workdir: Path
) -> dict[str, Any]:
    """spine.evaluation.privacy_audit of one generator: its training images are the members, the test split the
    non-members;
    the spine classifier's features as the second space. Returns the headline figures per space."""
    from spine.evaluation.privacy_audit import main as privacy_audit

    privacy_audit.main(
        [
            "--network",
            snapshot,
            "--train",
            train_zip,
            "--heldout",
            heldout_zip,
            "--outdir",
            str(workdir),
            "--classifier",
            classifier,
            "--seed",
            str(config.seed),
            "--inversion",
            str(config.privacy_inversion),
            "--inversion-steps",
            str(config.privacy_inversion_steps),
        ],
        standalone_mode=False,
    )
    report = json.loads((workdir / "privacy_audit.json").read_text())
    return dict(
        json=str(workdir / "privacy_audit.json"),
        privacy=report.get("privacy"),
        spaces=report["spaces"],
        inversion=report.get("inversion"),
    )


def _downstream(
    train_zip: str,
    synthetic: dict[str, str],
    test_zip: str,
    workdir: Path,
    options: DownstreamOptions,
    pools: list[str],
    parallel: int = 1,
    memo: ModelMemo | None = None,
) -> dict[str, Any]:
    """The downstream table (`parallel` models at a time, those `memo` keeps taken from it); pooled arms train a
    synthetic-only model only."""
    from spine.evaluation.downstream import run_downstream

    results = run_downstream(train_zip, synthetic, test_zip, str(workdir), options, pools, parallel, memo)
    return dict(
        json=str(workdir / "downstream.json"),
        markdown=str(workdir / "downstream.md"),
        aucs={arm: row["auc"] for arm, row in results["models"].items()},
        auc_cis={arm: row["auc_ci"] for arm, row in results["models"].items()},
        ratios={arm: r["ratio"] for arm, r in results["ratios"].items()},
        ratio_cis={arm: r["ratio_ci"] for arm, r in results["ratios"].items()},
        skills={arm: r["skill"] for arm, r in results["ratios"].items()},
        skill_cis={arm: r["skill_ci"] for arm, r in results["ratios"].items()},
    )


def panel_step(
    train_zip: str,
    synthetic: dict[str, str],
    test_zip: str,
    downstream_json: str,
    config: ExperimentConfig,
    workdir: Path,
    parallel: int = 1,
    memo: ModelMemo | None = None,
) -> dict[str, Any]:
    """The evaluator panel on the experiment's label mode: every member but the downstream protocol's own trains on
    the real and each synthetic set (synthetic-only arms), `parallel` models at a time (those `memo` keeps taken from
    it); the protocol's member reuses the downstream models."""
    from spine.evaluation.panel import score_panel, train_panel, write_panel

    options = downstream_options(config)
    members = panel_members(config)
    own = own_panel_member(config)
    variants = panel_variants(config, config.labels)
    scored = {generator for generators in variants.values() for generator in generators}
    synthetic = {name: path for name, path in synthetic.items() if name in scored}
    train_panel(
        train_zip,
        synthetic,
        test_zip,
        str(workdir),
        [m for m in members if m != own],
        options,
        without_mixed=set(synthetic),
        workers=parallel,
        memo=memo,
    )
    folders = {m.name: str(Path(downstream_json).parent if m == own else workdir / m.folder) for m in members}
    panel = score_panel(folders, test_zip, variants, options.n_resamples, options.seed)
    write_panel(panel, str(workdir))
    return dict(
        json=str(workdir / "panel.json"),
        markdown=str(workdir / "panel.md"),
        members=list(folders),
        variants={
            name: {
                key: row[key]
                for key in ("lowest_skill", "lowest_skill_ci", "lowest_member", "interval_covers", "members")
            }
            for name, row in panel.items()
        },
    )


def _dataset_classes(path: str) -> tuple[list[str], str]:
    from training.dataset import ImageFolderDataset

    meta = ImageFolderDataset(path).metadata
    return list(meta["class_names"]), meta["label_mode"]


def _check_same_config(config: ExperimentConfig, outdir: Path) -> None:
    """Store the config on the first run; refuse to continue an experiment with a different one."""
    path = outdir / "config.json"
    if path.is_file():  # read through from_dict, so keys added since it was written take their defaults
        saved = ExperimentConfig.from_dict(json.loads(path.read_text()), where=str(path)).to_dict()
        if saved != config.to_dict():
            diffs = sorted(k for k in set(saved) | set(config.to_dict()) if saved.get(k) != config.to_dict().get(k))
            raise dnnlib.UserError(
                f"{outdir} holds an experiment with a different config (differs in {diffs}); use a new --outdir"
            )
        return
    with dnnlib.atomic_write(path, "w") as f:
        json.dump(config.to_dict(), f, indent=1)


def _variants_option(_ctx: click.Context, _param: click.Parameter, value: str | None) -> list[dict] | None:
    if value is None:
        return None
    known = {v.name: v for v in PAPER_VARIANTS + (DP_VARIANT,)}
    chosen = []
    for name in value.split(","):
        if name not in known:
            raise click.BadParameter(f"{name!r}: expected some of {sorted(known)} (or define variants in --config)")
        chosen.append(dataclasses.asdict(known[name]))
    return chosen


@click.command()
@click.option("--outdir", required=True, type=dnnlib.OutputPath(file_okay=False), help="Experiment folder (resumable)")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="JSON config (keys: the fields of ExperimentConfig)",
)
@click.option(
    "--source",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="VinDr-SpineXR root [default: a phantom]",
)
@click.option("--kimg", type=click.IntRange(min=1), default=None, help="GAN training length per variant")
@click.option("--resolution", type=int, default=None)
@click.option(
    "--variants", callback=_variants_option, default=None, help="Comma-separated: stylegan2-ada, spinegan, spinegan-dp"
)
@click.option("--synth-per-class", type=click.IntRange(min=2), default=None)
@click.option("--seed", type=dnnlib.SEED, default=None)
@click.option(
    "--parallel",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Generators (and downstream classifiers) trained at a time (the CPU cores are shared out among them)",
)
def main(outdir: str, config_path: str | None, parallel: int, **overrides: Any) -> None:
    """Run the paper's comparison (plain conditional GAN vs SpineGAN [vs DP]) end to end, resumably."""
    config = load_config(config_path, overrides)
    out = run_experiment(config, outdir, parallel=parallel)
    click.echo(
        json.dumps(dict(downstream=out["downstream"], report=out.get("report"), timings=out["timings"]), indent=1)
    )


if __name__ == "__main__":
    main()  # pylint: disable=no-value-for-parameter

"""Synthetic learning, evaluated: train the spine classifier on real, synthetic, and real + synthetic images,
then test every model once on held-out real images (train on synthetic, test on real).

    python -m spine.evaluation.downstream --real-train=datasets/train.zip --synthetic=spinegan=synthetic.zip \\
        --test=datasets/test.zip --out=runs/downstream

Each model's best epoch is chosen on a study-level validation split of its own training source (synthetic
validation images for the synthetic-only model), never on the test set; the original code chose checkpoints on
test images. The code is laid out so that this cannot happen by accident: `train_arms` receives no test path, and
`evaluate_on_test` is the only function that opens the test set, after every model is final.

Outputs: downstream.json (per model: test AUC with a bootstrap 95% interval, training sizes, best epoch, validation
AUC; per generator: the AUC ratio synthetic/real with a paired bootstrap interval), downstream.md (the table laid
out like the paper's), and each model's classifier.pkl.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

import dnnlib
from spine.classifier.artifact import INPUT_NORMS, save_classifier
from spine.classifier.data import LabelledImages, load_labelled_images, predict_probabilities
from spine.classifier.models import ARCHITECTURES
from spine.classifier.training import TrainOptions, TrainResult, train_classifier
from spine.evaluation.arms import REAL, Arm
from spine.evaluation.model_memo import ModelMemo
from spine.scoring import (
    Groups,
    bootstrap_values,
    evaluate_scores,
    percentile_interval,
    resampling_unit,
    roc_auc,
    save_json,
)
from torch_utils import misc

EXAGGERATION_MARGIN = 0.05  # of validation AUC: beyond the study-split noise of a few hundred validation images


@dataclasses.dataclass(frozen=True)
class DownstreamOptions:
    """Classifier settings shared by every model, so the only difference between them is the training data.

    The training defaults are the classifier's own (`TrainOptions`)."""

    arch: str = TrainOptions.arch
    resolution: int | None = None  # default: the real training images' resolution
    epochs: int = TrainOptions.epochs
    patience: int = TrainOptions.patience
    batch_size: int = TrainOptions.batch_size
    lr: float = TrainOptions.lr
    val_fraction: float = TrainOptions.val_fraction
    seed: int = TrainOptions.seed
    n_resamples: int = 1000
    device: str = TrainOptions.device
    input_norm: str = TrainOptions.input_norm

    def train_options(self, resolution: int) -> TrainOptions:
        return TrainOptions(
            arch=self.arch,
            resolution=self.resolution or resolution,
            epochs=self.epochs,
            patience=self.patience,
            batch_size=self.batch_size,
            lr=self.lr,
            val_fraction=self.val_fraction,
            seed=self.seed,
            device=self.device,
            input_norm=self.input_norm,
        )


def combine(real: LabelledImages, synthetic: LabelledImages) -> LabelledImages:
    """Real and synthetic images as one training source (same task, classes and image shape required)."""
    if (real.label_mode, real.class_names) != (synthetic.label_mode, synthetic.class_names):
        raise ValueError(
            f"{synthetic.source}: labels {synthetic.label_mode} {synthetic.class_names} differ from "
            f"the real images' {real.label_mode} {real.class_names}"
        )
    if real.images.shape[1:] != synthetic.images.shape[1:]:
        raise ValueError(
            f"{synthetic.source}: images of shape {list(synthetic.images.shape[1:])} differ from the "
            f"real images' {list(real.images.shape[1:])}; synthesise at the training resolution"
        )
    return LabelledImages(
        images=torch.cat([real.images, synthetic.images]),
        labels=torch.cat([real.labels, synthetic.labels]),
        study_ids=list(real.study_ids) + list(synthetic.study_ids),
        label_mode=real.label_mode,
        class_names=list(real.class_names),
        source=f"{real.source} + {synthetic.source}",
        sha256=f"{real.sha256}+{synthetic.sha256}",
    )


def train_arms(
    real_train: str,
    synthetic: Mapping[str, str],
    options: DownstreamOptions,
    without_mixed: Collection[str] = (),
    workers: int = 1,
    memo: ModelMemo | None = None,
) -> dict[Arm, TrainResult]:
    """Train the real model and, per generator, the synthetic-only and real + synthetic models (only the former for
    the names in `without_mixed`, e.g. pooled arms, whose real + synthetic model would cost minutes and say little).
    A model that `memo` keeps for the same images and options is taken from it instead (e.g. the real arm, trained
    while the generators trained).

    `workers` > 1 trains that many models at a time, each in its own process on one thread: a 32x32 classifier's
    many small ops keep two threads only partly busy, so two one-thread trainings finish more models per minute (as
    for generators, docs/PERFORMANCE.md); a lone model left to train keeps every thread. Each model follows its own
    seed either way; only the thread count's float-summation order differs.

    Receives no test path on purpose: model selection can only use the training sources.
    """
    loaded = {real_train: load_labelled_images(real_train)}
    train_opts = options.train_options(loaded[real_train].resolution)
    sources: dict[Arm, tuple[str, ...]] = {Arm("real"): (real_train,)}
    for name, path in synthetic.items():
        loaded[path] = load_labelled_images(path)
        combine(loaded[real_train], loaded[path])  # checks compatibility before spending time on training
        sources[Arm("synthetic", name)] = (path,)
        if name not in without_mixed:
            sources[Arm("mixed", name)] = (real_train, path)
    kept = {arm: memo.get([loaded[p] for p in paths], train_opts) for arm, paths in sources.items()} if memo else {}
    left = {arm: paths for arm, paths in sources.items() if kept.get(arm) is None}
    if workers == 1 or len(left) == 1:
        trained = {arm: _train_on(paths, train_opts, loaded) for arm, paths in left.items()}
    else:
        trained = _train_in_processes(left, train_opts, workers)
    return {arm: kept.get(arm) or trained[arm] for arm in sources}


def _train_on(
    paths: tuple[str, ...], train_opts: TrainOptions, loaded: Mapping[str, LabelledImages] | None = None
) -> TrainResult:
    """One model on the images of `paths` (one dataset, or real + synthetic combined); `loaded` holds datasets
    already read in this process (a worker process reads its own)."""
    loaded = loaded or {}
    data = [loaded[path] if path in loaded else load_labelled_images(path) for path in paths]
    return train_classifier(data[0] if len(data) == 1 else combine(*data), train_opts)


def _one_thread() -> None:
    torch.set_num_threads(1)


def _train_in_processes(
    sources: Mapping[Arm, tuple[str, ...]], train_opts: TrainOptions, workers: int
) -> dict[Arm, TrainResult]:
    """`_train_on` for every source, `workers` one-thread processes at a time, the largest sources first (fewer idle
    minutes at the end); the models are returned in `sources`' order."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    largest_first = sorted(sources, key=lambda arm: -sum(os.path.getsize(p) for p in sources[arm]))
    context = multiprocessing.get_context("spawn")  # no forked copy of the parent's threads and torch state
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_one_thread) as pool:
        futures = {arm: pool.submit(_train_on, sources[arm], train_opts) for arm in largest_first}
        return {arm: futures[arm].result() for arm in sources}


def _headline_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Binary AUC, or the macro one-vs-rest AUC over classes present with both signs."""
    if scores.ndim == 1:
        return roc_auc(labels, scores)
    return float(
        np.mean(
            [
                roc_auc(labels == k, scores[:, k])
                for k in range(scores.shape[1])
                if 0 < (labels == k).sum() < len(labels)
            ]
        )
    )


def skill_ratio(auc_synthetic: float, auc_real: float) -> float:
    """(AUC_syn - 0.5) / (AUC_real - 0.5): the share of the real model's skill above chance that the synthetic-only
    model keeps. Unlike the plain ratio (0.5 / 0.83 = 0.60 for a model at chance) it reads 0 at chance; NaN
    where the real model is itself not above chance (no skill to keep)."""
    return (auc_synthetic - 0.5) / (auc_real - 0.5) if auc_real > 0.5 else float("nan")


def auc_ratio(
    labels: np.ndarray,
    scores_synthetic: np.ndarray,
    scores_real: np.ndarray,
    n_resamples: int,
    seed: int,
    groups: Groups = None,
) -> dict[str, Any]:
    """The plain ratio AUC(synthetic) / AUC(real) and the skill ratio (see `skill_ratio`) of two models on the same
    test images, each with a paired percentile bootstrap interval: both models and both ratios are computed on the
    very same resamples of the test images (the resamples of `evaluate_scores` with the same seed and `groups`:
    whole studies when `groups` names each image's study).

    The skill interval is None when a resample leaves the real model at or below chance (the ratio is then
    undefined, and the percentile interval would hide it); the plain ratio's likewise when a resample leaves the
    real model at AUC 0 (a few test studies can).
    """
    labels = np.asarray(labels).astype(np.int64)
    classes = np.unique(labels)

    def both(idx: np.ndarray) -> np.ndarray:
        syn = _headline_auc(labels[idx], scores_synthetic[idx])
        real = _headline_auc(labels[idx], scores_real[idx])
        return np.array([syn / real if real > 0 else np.nan, skill_ratio(syn, real)])

    def every_class_present(idx: np.ndarray) -> bool:
        return np.isin(classes, labels[idx]).all()

    values = bootstrap_values(both, len(labels), every_class_present, n_resamples, seed, groups=groups)
    point = both(np.arange(len(labels)))
    ratio_ci, skill_ci = (None if np.isnan(column).any() else list(percentile_interval(column)) for column in values.T)
    return dict(ratio=float(point[0]), ratio_ci=ratio_ci, skill=float(point[1]), skill_ci=skill_ci)


def evaluate_on_test(models: Mapping[Arm, TrainResult], test_path: str, options: DownstreamOptions) -> dict[str, Any]:
    """Score every final model on the test set: the only place the test images are read. Results are keyed by
    `Arm.key`; each model's row records its arm's kind and generator."""
    test = load_labelled_images(test_path)
    labels = test.labels.numpy()
    results: dict[str, Any] = dict(
        test=dict(
            path=str(test_path),
            num_images=len(labels),
            sha256=test.sha256,
            class_names=test.class_names,
            resampled=resampling_unit(test.study_ids),
            prevalence={n: float((labels == k).mean()) for k, n in enumerate(test.class_names)},
        ),
        models={},
        ratios={},
    )
    scores = {}
    for arm, model in models.items():
        if list(model.spec.class_names) != list(test.class_names):
            raise ValueError(
                f"{test_path}: classes {test.class_names} differ from model {arm.key!r}'s "
                f"{list(model.spec.class_names)}"
            )
        scores[arm] = predict_probabilities(model.net, model.spec, test.images, options.batch_size).double().numpy()
        report = evaluate_scores(
            labels,
            scores[arm],
            test.class_names,
            thresholds=model.spec.thresholds,
            n_resamples=options.n_resamples,
            seed=options.seed,
            groups=test.study_ids,
        )
        prov = model.provenance
        results["models"][arm.key] = dict(
            kind=arm.kind,
            generator=arm.variant,
            auc=report["auc"] if report["task"] == "binary" else report["macro_auc"],
            auc_ci=report["auc_ci"] if report["task"] == "binary" else report["macro_auc_ci"],
            num_train=prov["num_train"],
            num_val=prov["num_val"],
            best_epoch=prov["best_epoch"],
            best_val_auc=prov["best_val_auc"],
            train_source=prov["dataset"],
            test_report=report,
        )
    for arm in models:
        if arm.kind == "synthetic":
            results["ratios"][arm.key] = auc_ratio(
                labels, scores[arm], scores[Arm("real")], options.n_resamples, options.seed, test.study_ids
            )
    return results


def _row_name(row: Mapping[str, Any]) -> str:
    """A table row's name from its model's arm (the `kind` and `generator` of `evaluate_on_test`)."""
    if row["kind"] == "real":
        return "Real"
    return f"{'Synthetic only' if row['kind'] == 'synthetic' else 'Real + synthetic'} ({row['generator']})"


def ratio_texts(ratio: Mapping[str, Any] | None) -> tuple[str, str]:
    """('plain ratio (CI)', 'skill ratio (CI)') of a synthetic arm for tables; empty for other arms."""
    if ratio is None:
        return "", ""
    plain_ci = ratio["ratio_ci"]
    plain = f"{ratio['ratio']:.3f} " + (
        "(undefined CI)" if plain_ci is None else f"({plain_ci[0]:.3f}-{plain_ci[1]:.3f})"
    )
    skill_ci = ratio.get("skill_ci")
    skill = (
        ""
        if "skill" not in ratio
        else f"{ratio['skill']:.3f}"
        + (" (undefined CI)" if skill_ci is None else f" ({skill_ci[0]:.3f}-{skill_ci[1]:.3f})")
    )
    return plain, skill


def above_chance(row: Mapping[str, Any]) -> bool | None:
    """Whether a model's test AUC interval lies above 0.5 (None when the AUC is undefined)."""
    return None if row["auc_ci"] is None else row["auc_ci"][0] > 0.5


def exaggerated_arms(results: Mapping[str, Any]) -> list[str]:
    """Synthetic-only arms whose own validation AUC exceeds the real arm's by more than EXAGGERATION_MARGIN.

    A generator that draws the classes further apart than the real ones are lets its classifier reach a validation
    AUC (on its own synthetic images) the real classifier cannot; what it learns then is the exaggeration, which
    does not transfer to real images (docs/RESULTS.md, section E3)."""
    real = results["models"][REAL]["best_val_auc"]
    return [
        arm
        for arm, row in results["models"].items()
        if row["kind"] == "synthetic" and row["best_val_auc"] > real + EXAGGERATION_MARGIN
    ]


def markdown_table(results: Mapping[str, Any]) -> str:
    """The paper's layout: one row per training source, test AUC with its interval, and the two ratios to real;
    beside them each model's validation AUC on its own data (how separable its training classes are)."""
    test = results["test"]
    lines = [
        "| Training data | Train / val images | Val AUC (own data) | Test AUC | 95% CI "
        "| AUC ratio to real (95% CI) | skill ratio (95% CI) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for arm, row in results["models"].items():
        ci = "n/a" if row["auc_ci"] is None else f"{row['auc_ci'][0]:.3f}-{row['auc_ci'][1]:.3f}"
        auc = "n/a" if row["auc"] is None else f"{row['auc']:.3f}"
        plain, skill = ("1.000", "1.000") if row["kind"] == "real" else ratio_texts(results["ratios"].get(arm))
        lines.append(
            f"| {_row_name(row)} | {row['num_train']} / {row['num_val']} | {row['best_val_auc']:.3f} "
            f"| {auc} | {ci} | {plain} | {skill} |"
        )
    prevalence = ", ".join(f"{name} {share:.0%}" for name, share in test["prevalence"].items())
    chance = [_row_name(row) for row in results["models"].values() if above_chance(row) is False]
    lines += [
        "",
        f"Test: {test['num_images']} real images never used for training or model selection "
        f"({prevalence}). Each model's epoch was chosen on a study-level validation split of its own "
        f"training data. Intervals: percentile bootstrap over test {test.get('resampled', 'images')} "
        f"(one trained model per row: they do not cover training randomness), "
        f"{next(iter(results['models'].values()))['test_report']['n_resamples']} resamples, the same "
        f"resamples for every model and ratio (paired). Skill ratio = (AUC_syn - 0.5) / (AUC_real - 0.5): "
        f"0 at chance, 1 when the synthetic-only model matches the real one.",
    ]
    if chance:
        lines += ["", "Not above chance (95% interval of the test AUC reaches 0.5): " + ", ".join(chance) + "."]
    exaggerated = (
        [_row_name(results["models"][arm]) for arm in exaggerated_arms(results)] if REAL in results["models"] else []
    )
    if exaggerated:
        lines += [
            "",
            "Generated classes easier to tell apart than the real ones (validation AUC on their own "
            f"images more than {EXAGGERATION_MARGIN} above the real model's): "
            + ", ".join(exaggerated)
            + ". The generator exaggerates the class difference; a classifier trained on its images learns "
            "the exaggeration, which need not hold on real images.",
        ]
    return "\n".join(lines) + "\n"


def downstream_inputs(
    real_train: str, synthetic: Mapping[str, str], test_path: str, without_mixed: Collection[str]
) -> dict[str, Any]:
    """What a downstream run trains and tests on, by content (sha256 of each dataset, zip or folder), and which arms
    it leaves out: recorded with its results, so that a finished run can be recognised (`finished_downstream`)."""
    return dict(
        real_train=dnnlib.util.tree_digest(real_train),
        synthetic={name: dnnlib.util.tree_digest(path) for name, path in sorted(synthetic.items())},
        test=dnnlib.util.tree_digest(test_path),
        without_mixed=sorted(without_mixed),
    )


def finished_downstream(
    outdir: str,
    real_train: str,
    synthetic: Mapping[str, str],
    test_path: str,
    options: DownstreamOptions,
    without_mixed: Collection[str] = (),
) -> dict[str, Any] | None:
    """The results a finished `run_downstream` left in `outdir` for the same datasets and options, else None.
    Its models are written before downstream.json (atomically), so finding the JSON means the models are there."""
    path = os.path.join(outdir, "downstream.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        results = json.load(f)
    same_options = results.get("options") == json.loads(json.dumps(dataclasses.asdict(options)))
    if same_options and results.get("inputs") == downstream_inputs(real_train, synthetic, test_path, without_mixed):
        return results
    return None


def run_downstream(
    real_train: str,
    synthetic: Mapping[str, str],
    test_path: str,
    outdir: str,
    options: DownstreamOptions,
    without_mixed: Collection[str] = (),
    workers: int = 1,
    memo: ModelMemo | None = None,
) -> dict[str, Any]:
    """Train every model (`train_arms`, `workers` at a time, those `memo` keeps taken from it), then evaluate each
    once on the test set; write JSON, Markdown, models."""
    models = train_arms(real_train, synthetic, options, without_mixed, workers, memo)
    results = evaluate_on_test(models, test_path, options)
    results["options"] = dataclasses.asdict(options)
    results["inputs"] = downstream_inputs(real_train, synthetic, test_path, without_mixed)
    os.makedirs(outdir, exist_ok=True)
    dnnlib.remove_stale_temp_files(outdir)  # of an earlier run killed mid-write
    for arm, model in models.items():
        save_classifier(os.path.join(outdir, f"classifier-{arm.key}.pkl"), model.net, model.spec, model.provenance)
    save_json(results, os.path.join(outdir, "downstream.json"))
    with dnnlib.atomic_write(os.path.join(outdir, "downstream.md"), "w") as f:
        f.write(markdown_table(results))
    return results


def parse_named_datasets(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    """Click callback: repeated NAME=PATH options -> {name: path}, each path an existing dataset, names distinct."""
    parsed = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise click.BadParameter(f"{value!r}: expected NAME=PATH, e.g. spinegan=synthetic.zip")
        if not Path(path).exists():
            raise click.BadParameter(f"{path}: no such dataset")
        if name in parsed:
            raise click.BadParameter(f"{name!r} given twice")
        parsed[name] = path
    return parsed


@click.command()
@click.option("--real-train", required=True, type=click.Path(exists=True), help="Real training images (labelled)")
@click.option(
    "--synthetic", multiple=True, callback=parse_named_datasets, help="NAME=PATH of a synthetic dataset (repeatable)"
)
@click.option("--test", "test_path", required=True, type=click.Path(exists=True), help="Held-out real test images")
@click.option("--out", "outdir", required=True, type=dnnlib.OutputPath(file_okay=False), help="Output folder")
@click.option("--arch", type=click.Choice(ARCHITECTURES), default=DownstreamOptions.arch, show_default=True)
@click.option("--resolution", type=click.IntRange(min=8), default=None, help="Classifier input size")
@click.option("--epochs", type=click.IntRange(min=1), default=DownstreamOptions.epochs, show_default=True)
@click.option("--patience", type=click.IntRange(min=1), default=DownstreamOptions.patience, show_default=True)
@click.option(
    "--batch", "batch_size", type=click.IntRange(min=2), default=DownstreamOptions.batch_size, show_default=True
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=DownstreamOptions.val_fraction,
    show_default=True,
)
@click.option("--seed", type=dnnlib.SEED, default=DownstreamOptions.seed, show_default=True)
@click.option("--n-resamples", type=click.IntRange(min=1), default=DownstreamOptions.n_resamples, show_default=True)
@click.option("--device", type=misc.DEVICE, default=DownstreamOptions.device, show_default=True)
@click.option(
    "--input-norm",
    type=click.Choice(INPUT_NORMS),
    default=DownstreamOptions.input_norm,
    show_default=True,
    help="Pixel normalisation of every model: the training set's mean/std, or each image's own (after a "
    "5x5 binomial blur with blurred_image)",
)
def main(real_train: str, synthetic: dict[str, str], test_path: str, outdir: str, **kwargs: Any) -> None:
    """Train on real / synthetic / real + synthetic images, test once on real images; AUC table with intervals."""
    results = run_downstream(real_train, synthetic, test_path, outdir, DownstreamOptions(**kwargs))
    click.echo(markdown_table(results))
    click.echo(f"-> {outdir}/downstream.json, {outdir}/downstream.md")


if __name__ == "__main__":
    main()  # pylint: disable=no-value-for-parameter

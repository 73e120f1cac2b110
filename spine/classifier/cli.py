"""The classifier's command line: `python -m spine.classifier train|evaluate`."""

from __future__ import annotations

from pathlib import Path

import click

import dnnlib
from spine.classifier.artifact import INPUT_NORMS, check_compatible, load_classifier, save_classifier
from spine.classifier.data import load_labelled_images, predict_probabilities
from spine.classifier.models import ARCHITECTURES
from spine.classifier.training import TrainOptions, train_classifier
from spine.scoring import evaluate_scores, roc_curves, save_json, save_roc_plot
from torch_utils import misc

NEAR_CHANCE_AUC = 0.6  # below this a binary or macro AUC says the classifier barely separates the classes


@click.group()
def cli() -> None:
    """Train and evaluate spine classifiers (classifier.pkl)."""


@cli.command()
@click.option("--data", required=True, type=click.Path(exists=True), help="Labelled dataset (folder or zip)")
@click.option("--out", required=True, type=dnnlib.OutputPath(dir_okay=False), help="Where to write classifier.pkl")
@click.option("--arch", type=click.Choice(ARCHITECTURES), default="small_cnn", show_default=True)
@click.option("--resolution", type=click.IntRange(min=8), default=None, help="Input size [default: the dataset's]")
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True, help="Maximum epochs")
@click.option(
    "--patience",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Stop after this many epochs without a better validation AUC",
)
@click.option("--batch", "batch_size", type=click.IntRange(min=2), default=32, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.2,
    show_default=True,
    help="Fraction of studies held out to choose the best epoch",
)
@click.option("--seed", type=dnnlib.SEED, default=0, show_default=True)
@click.option(
    "--init-weights",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Local state dict of the stock torchvision model (e.g. ImageNet weights)",
)
@click.option("--device", type=misc.DEVICE, default="cpu", show_default=True)
@click.option(
    "--input-norm",
    type=click.Choice(INPUT_NORMS),
    default="dataset",
    show_default=True,
    help="Pixel normalisation: the training set's mean/std, or each image's own (after a 5x5 binomial "
    "blur with blurred_image)",
)
def train(
    data: str,
    out: str,
    arch: str,
    resolution: int | None,
    epochs: int,
    patience: int,
    batch_size: int,
    lr: float,
    val_fraction: float,
    seed: int,
    init_weights: str | None,
    device: str,
    input_norm: str,
) -> None:
    """Train a classifier on a labelled dataset; the best epoch is chosen on a study-level validation split."""
    images = load_labelled_images(data)
    dnnlib.remove_stale_temp_files(Path(out).resolve().parent)  # of an earlier run killed mid-write
    options = TrainOptions(
        arch=arch,
        resolution=resolution or images.resolution,
        epochs=epochs,
        patience=patience,
        batch_size=batch_size,
        lr=lr,
        val_fraction=val_fraction,
        seed=seed,
        init_weights=init_weights,
        device=device,
        input_norm=input_norm,
    )
    result = train_classifier(images, options)
    save_classifier(out, result.net, result.spec, result.provenance)
    auc = result.provenance["best_val_auc"]
    click.echo(f"best epoch {result.provenance['best_epoch']}, val AUC {auc:.4f} -> {out}")
    if auc < NEAR_CHANCE_AUC:
        click.echo(chance_warning(auc), err=True)


def chance_warning(auc: float) -> str:
    return (
        f"Warning: the saved classifier's validation AUC {auc:.3f} is near chance (0.5): it has hardly learnt "
        f"to tell the classes apart; give it more images, epochs or resolution before relying on it"
    )


@cli.command()
@click.option("--classifier", "classifier_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--data", required=True, type=click.Path(exists=True), help="Labelled test dataset (folder or zip)")
@click.option("--out", required=True, type=dnnlib.OutputPath(dir_okay=False), help="Metrics JSON")
@click.option("--roc", type=dnnlib.OutputPath(dir_okay=False), default=None, help="ROC curve PNG")
@click.option("--n-resamples", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--seed", type=dnnlib.SEED, default=0, show_default=True, help="Bootstrap seed")
@click.option("--batch", "batch_size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--device", type=misc.DEVICE, default="cpu", show_default=True)
def evaluate(
    classifier_path: str,
    data: str,
    out: str,
    roc: str | None,
    n_resamples: int,
    seed: int,
    batch_size: int,
    device: str,
) -> None:
    """AUC with a bootstrap interval over studies, sensitivity/specificity (validation threshold and Youden point),
    ROC."""
    try:
        classifier = load_classifier(classifier_path, device)
    except dnnlib.UserError as exc:
        raise dnnlib.UserError(f"--classifier: {exc}") from None
    images = load_labelled_images(data)
    try:
        check_compatible(classifier, images.label_mode, len(images.class_names), images.class_names)
    except ValueError as exc:
        raise dnnlib.UserError(f"--classifier={classifier_path} on --data={data}: {exc}") from None
    trained_at = classifier.spec.resolution
    if images.resolution != trained_at:  # the inputs are resized to the classifier's size, silently otherwise
        click.echo(
            f"Warning: --data={data} holds {images.resolution}x{images.resolution} images; the classifier was "
            f"trained on {trained_at}x{trained_at} ones and sees them resized, so its scores may not hold",
            err=True,
        )
    for path in (out, roc):
        if path is not None:  # temp files of an earlier run killed mid-write
            dnnlib.remove_stale_temp_files(Path(path).resolve().parent)
    scores = predict_probabilities(classifier, classifier.spec, images.images, batch_size).numpy()
    labels = images.labels.numpy()
    report = evaluate_scores(
        labels,
        scores,
        images.class_names,
        thresholds=classifier.spec.thresholds,
        n_resamples=n_resamples,
        seed=seed,
        groups=images.study_ids,
    )
    report.update(
        classifier=str(Path(classifier_path).resolve()), data=str(Path(data).resolve()), data_sha256=images.sha256
    )
    save_json(report, out)
    if roc is not None:
        save_roc_plot(roc_curves(labels, scores, images.class_names), roc, title=Path(data).name)
    click.echo(f"{auc_summary(report)} -> {out}")


def auc_summary(report: dict) -> str:
    """'AUC 0.836 (95% CI 0.798-0.870)' (macro AUC for several classes) from an `evaluate_scores` report."""
    name, key = ("AUC", "auc") if report["task"] == "binary" else ("macro AUC", "macro_auc")
    auc, interval = report[key], report[key + "_ci"]
    if auc is None:
        return f"{name} undefined (the test set lacks a class)"
    over = f", over test {report['resampled']}" if "resampled" in report else ""
    return f"{name} {auc:.3f} (95% CI {interval[0]:.3f}-{interval[1]:.3f}{over})"

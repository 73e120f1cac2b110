"""How much real-image skill a generator snapshot's images carry, without touching any test split.

A classifier trained on synthetic images only never sees a real image, so every real *training* image is unseen
data for it: this tool synthesises images from a snapshot, trains the downstream classifier on them (the
downstream protocol: same architecture, epochs, patience, seed, validation split of its own synthetic data) and
scores it on the real training images. Used for curves against kimg while a run trains (docs/RESULTS.md); the
demo's headline still comes from the held-out test split, once, at the end.

    python tools/snapshot_skill.py --network run/network-snapshot-000020.pkl --real runs/demo/data/train/train32.zip \\
        --out runs/curve/020 [--per-class 1000] [--epochs 25] [--patience 8] [--seed 0] [--arch small_cnn]
        [--input-norm dataset]

With --dataset instead of --network, it scores a synthetic dataset as it is (e.g. one pooled from several
generators by spine.evaluation.pooling; docs/RESULTS.md section I).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dnnlib  # noqa: E402
from spine.classifier.artifact import INPUT_NORMS  # noqa: E402
from spine.classifier.data import load_labelled_images, predict_probabilities  # noqa: E402
from spine.classifier.models import ARCHITECTURES  # noqa: E402
from spine.classifier.training import TrainOptions, train_classifier  # noqa: E402
from spine.evaluation.class_means import class_means, difference_correlation  # noqa: E402
from spine.pipeline.config import ExperimentConfig  # noqa: E402
from spine.pipeline.experiment import _dataset_classes, synthesize_variant  # noqa: E402
from spine.scoring import evaluate_scores  # noqa: E402


@click.command()
@click.option("--network", type=click.Path(exists=True, dir_okay=False), default=None, help="Snapshot .pkl")
@click.option(
    "--dataset",
    type=click.Path(exists=True),
    default=None,
    help="A synthetic dataset to score instead of a snapshot's images",
)
@click.option("--real", "real_path", required=True, type=click.Path(exists=True), help="Real training images")
@click.option("--out", required=True, type=dnnlib.OutputPath(file_okay=False), help="Output folder (must not exist)")
@click.option("--per-class", type=click.IntRange(min=2), default=1000, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=25, show_default=True)
@click.option("--patience", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--arch", type=click.Choice(ARCHITECTURES), default="small_cnn", show_default=True)
@click.option(
    "--input-norm",
    type=click.Choice(INPUT_NORMS),
    default="dataset",
    show_default=True,
    help="The classifier's pixel normalisation (spine.classifier.artifact.INPUT_NORMS)",
)
def main(
    network: str | None,
    dataset: str | None,
    real_path: str,
    out: str,
    per_class: int,
    epochs: int,
    patience: int,
    seed: int,
    arch: str,
    input_norm: str,
) -> None:
    """Synthetic-only classifier of a snapshot (or a synthetic dataset), scored on real training images; writes
    skill.json."""
    if (network is None) == (dataset is None):
        raise click.UsageError("give exactly one of --network (a snapshot) and --dataset (synthetic images)")
    outdir = Path(out)
    if outdir.exists():
        raise click.ClickException(f"--out={out} exists; choose a new folder")
    outdir.mkdir(parents=True)
    real = load_labelled_images(real_path)
    synthetic = dataset
    if network is not None:
        names, mode = _dataset_classes(real_path)
        config = ExperimentConfig(synth_per_class=per_class, seed=seed, resolution=real.resolution)
        synthetic = synthesize_variant([network], names, mode, config, outdir)["dataset"]
    model = train_classifier(
        load_labelled_images(synthetic),
        TrainOptions(
            arch=arch, resolution=real.resolution, epochs=epochs, patience=patience, seed=seed, input_norm=input_norm
        ),
    )
    scores = predict_probabilities(model.net, model.spec, real.images, 256).double().numpy()
    report = evaluate_scores(real.labels.numpy(), scores, real.class_names, n_resamples=500, seed=seed)
    result = dict(
        network=network,
        dataset=synthetic,
        real=real_path,
        per_class=per_class if dataset is None else None,
        arch=arch,
        input_norm=input_norm,
        auc=report["auc"],
        auc_ci=report["auc_ci"],
        synthetic_val_auc=model.provenance["best_val_auc"],
        best_epoch=model.provenance["best_epoch"],
        class_difference_r=difference_correlation(class_means(real_path), class_means(synthetic)),
    )
    with dnnlib.atomic_write(outdir / "skill.json", "w") as f:
        json.dump(result, f, indent=1)
    click.echo(json.dumps(result))


if __name__ == "__main__":
    main()  # pylint: disable=no-value-for-parameter

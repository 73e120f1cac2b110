"""Why does (or doesn't) a classifier trained on synthetic images work on real ones? Two diagnosis figures of an
experiment (spine.pipeline.experiment / spine.pipeline.demo):

* class means: each class's mean image, real training images vs the generator's samples, and the difference
  abnormal - normal, with the correlation of the two difference maps (do the classes differ where real ones do?);
* occlusion maps: where the downstream classifiers (trained on real images, on synthetic images only) look on real
  abnormal images: the drop of the abnormal score when a small patch is replaced by the image's mean, averaged
  over images (positive = evidence for "abnormal" lies there), with the correlation of the two maps.

    python -m spine.evaluation.diagnosis --experiment runs/demo --out runs/demo/diagnosis

Read-only on the experiment; it runs after every model is final and informs no choice. The occlusion maps use the
experiment's real test images only as pictures to look at (abnormal ones, `--num` at most).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

import dnnlib
from spine.classifier.artifact import load_classifier
from spine.classifier.data import load_labelled_images, predict_probabilities
from spine.evaluation.class_means import class_means, difference_correlation, plot_class_means

Scorer = Callable[[torch.Tensor], torch.Tensor]  # uint8 images [N, C, H, W] -> abnormal score [N]


def occlusion_map(score: Scorer, images: torch.Tensor, patch: int = 4, stride: int = 2, batch: int = 256) -> np.ndarray:
    """Mean over `images` of the score drop when a `patch` x `patch` square (every `stride` pixels) is set to the
    image's mean grey level; each pixel gets the average drop of the patches that cover it. float64 [H, W]."""
    n, _, h, w = images.shape
    if patch > min(h, w) or patch < 1 or stride < 1:
        raise ValueError(f"patch {patch} and stride {stride} must be >= 1 and the patch no larger than {h}x{w}")
    base = score(images).double()
    fill = images.double().mean(dim=(1, 2, 3)).round().to(images.dtype)
    tops = list(range(0, h - patch + 1, stride))
    lefts = list(range(0, w - patch + 1, stride))
    total = np.zeros((h, w))
    cover = np.zeros((h, w))
    positions = [(top, left) for top in tops for left in lefts]
    for start in range(0, len(positions), max(1, batch // n)):
        chunk = positions[start : start + max(1, batch // n)]
        occluded = images.repeat(len(chunk), 1, 1, 1)
        for k, (top, left) in enumerate(chunk):
            occluded[k * n : (k + 1) * n, :, top : top + patch, left : left + patch] = fill.view(n, 1, 1, 1)
        drops = (base.repeat(len(chunk)) - score(occluded).double()).view(len(chunk), n).mean(dim=1)
        for (top, left), drop in zip(chunk, drops.tolist()):
            total[top : top + patch, left : left + patch] += drop
            cover[top : top + patch, left : left + patch] += 1
    return np.divide(total, cover, out=np.zeros_like(total), where=cover > 0)


def map_correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson r of two maps (None when either is constant)."""
    a, b = a.ravel(), b.ravel()
    return None if a.std() == 0 or b.std() == 0 else float(np.corrcoef(a, b)[0, 1])


def classifier_scorer(path: str) -> Scorer:
    """The abnormal probability of a saved binary classifier, for uint8 images."""
    classifier = load_classifier(path)
    if classifier.spec.num_outputs != 1:
        raise ValueError(f"{path}: occlusion maps need a binary (abnormality) classifier")
    return lambda images: predict_probabilities(classifier, classifier.spec, images, 256)


def plot_occlusion(maps: dict[str, np.ndarray], mean_image: np.ndarray, path: Path) -> str:
    """The mean real abnormal image, then one occlusion map per classifier on a shared symmetric colour scale."""
    from matplotlib.figure import Figure

    span = max(float(np.abs(m).max()) for m in maps.values()) or 1.0
    fig = Figure(figsize=(2.8 * (len(maps) + 1), 2.9), dpi=90)
    ax = fig.add_subplot(1, len(maps) + 1, 1)
    ax.imshow(mean_image, cmap="gray", vmin=0, vmax=255)
    ax.set(title="real abnormal (mean)", xticks=[], yticks=[])
    for i, (name, occ) in enumerate(maps.items()):
        ax = fig.add_subplot(1, len(maps) + 1, i + 2)
        image = ax.imshow(occ, cmap="RdBu_r", vmin=-span, vmax=span)
        ax.set(title=f"trained on {name}", xticks=[], yticks=[])
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    with dnnlib.atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", bbox_inches="tight")
    return path.name


def diagnose(experiment: Path, out: Path, num: int = 200) -> dict[str, Any]:
    """Write class-means-<variant>.png, occlusion.png and diagnosis.json into `out`; returns the JSON's content."""
    steps = {}
    for marker in sorted((experiment / "steps").glob("*.json")):
        record = json.loads(marker.read_text())
        steps[record["step"]] = record["outputs"]
    out.mkdir(parents=True, exist_ok=True)
    train_zip = steps["data/train"]["dataset"]
    real_means = class_means(train_zip)
    result: dict[str, Any] = dict(experiment=str(experiment), class_difference_r={}, occlusion={})
    for step, outputs in steps.items():
        if step.startswith("synthesize/"):
            name = step.removeprefix("synthesize/")
            fake_means = class_means(outputs["dataset"])
            plot_class_means(real_means, fake_means, out / f"class-means-{name}.png")
            result["class_difference_r"][name] = difference_correlation(real_means, fake_means)
    downstream = Path(steps["downstream"]["json"]).parent
    test = load_labelled_images(steps["data/test"]["dataset"])
    abnormal = test.images[test.labels == 1][:num]
    maps = {}
    for path in sorted(downstream.glob("classifier-*.pkl")):
        arm = path.stem.removeprefix("classifier-")
        if not arm.startswith("real+"):
            maps[arm] = occlusion_map(classifier_scorer(str(path)), abnormal)
    plot_occlusion(maps, abnormal.double().mean(dim=(0, 1)).numpy(), out / "occlusion.png")
    real_map = maps.get("real")
    for arm, occ in maps.items():
        result["occlusion"][arm] = dict(
            max_drop=float(occ.max()), r_with_real=None if real_map is None else map_correlation(occ, real_map)
        )
    result["num_abnormal_images"] = int(len(abnormal))
    with dnnlib.atomic_write(out / "diagnosis.json", "w") as f:
        json.dump(result, f, indent=1)
    return result


@click.command()
@click.option(
    "--experiment",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="A finished experiment folder (spine.pipeline.experiment / spine.pipeline.demo)",
)
@click.option("--out", required=True, type=dnnlib.OutputPath(file_okay=False), help="Folder for the figures")
@click.option(
    "--num",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="At most this many real abnormal test images for the occlusion maps",
)
def main(experiment: str, out: str, num: int) -> None:
    """Class-mean and occlusion figures of an experiment's generators and downstream classifiers."""
    if not (Path(experiment) / "steps" / "downstream.json").is_file():
        raise click.ClickException(f"--experiment={experiment}: no finished downstream step")
    click.echo(json.dumps(diagnose(Path(experiment), Path(out), num), indent=1))


if __name__ == "__main__":
    main()  # pylint: disable=no-value-for-parameter

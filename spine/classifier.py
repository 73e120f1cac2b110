"""The spine classifier artifact (classifier.pkl): its spec, input mapping, safe save/load, and the CLI.

A classifier is a network plus the exact mapping from image pixels to network input. Both the real-image path
(uint8 PNGs) and the generator path (floats in [-1, 1]) go through the same mapping, so that the clinical loss and
label fidelity see a generated image exactly as the classifier would see it saved as PNG and reloaded.

classifier.pkl is `torch.save` of plain data only (no classes), read back with `weights_only=True`:
    {format: 'spinegan-classifier-v1', arch, arch_kwargs, label_mode, class_names, resolution, channels,
     intensity: {scale, mean, std}, thresholds, state_dict, provenance}
Network input = (pixel * scale - mean[c]) / std[c], where pixel is the uint8 value (0..255) after matching the
channel count and resizing to `resolution` (bilinear with antialias). `thresholds` are validation Youden points
on the class probabilities (sigmoid of the logit for 'abnormality', softmax per class for 'lesion').
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import torch
import torch.nn.functional as F
from torch import nn

import dnnlib
from spine.classifier_models import ARCHITECTURES, build_network
from torch_utils import misc

FORMAT = "spinegan-classifier-v1"
LABEL_MODES = ("abnormality", "lesion")


@dataclasses.dataclass(frozen=True)
class ClassifierSpec:
    """What a classifier predicts and how pixels become its input (everything in classifier.pkl but weights)."""

    arch: str
    arch_kwargs: dict[str, Any]
    label_mode: str
    class_names: tuple[str, ...]
    resolution: int
    channels: int
    intensity: dict[str, Any]  # {scale: float, mean: [channels], std: [channels]}
    thresholds: tuple[float, ...]  # one for 'abnormality', one per class for 'lesion'

    @property
    def num_outputs(self) -> int:
        """One abnormal logit for the binary task, one logit per class otherwise."""
        return 1 if self.label_mode == "abnormality" else len(self.class_names)


def match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Gray -> RGB by repetition, RGB -> gray by the channel mean; anything else is refused."""
    have = x.shape[1]
    if have == channels:
        return x
    if have == 1:
        return x.repeat(1, channels, 1, 1)
    if channels == 1 and have == 3:
        return x.mean(dim=1, keepdim=True)
    raise ValueError(f"cannot map {have}-channel images to a {channels}-channel classifier")


def to_classifier_pixels(x: torch.Tensor, spec: ClassifierSpec) -> torch.Tensor:
    """Float pixels in [0, 255], NCHW, any size -> the classifier's channels and resolution (differentiable)."""
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"expected float NCHW pixels, got {x.dtype} of shape {tuple(x.shape)}")
    x = match_channels(x, spec.channels)
    if x.shape[2:] != (spec.resolution, spec.resolution):
        x = F.interpolate(x, size=(spec.resolution, spec.resolution), mode="bilinear", align_corners=False,
                          antialias=True)
    return x


def quantize_generated(img: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] -> the uint8 values generate.py would save, as floats.

    floor(clamp(img * 127.5 + 128, 0, 255)) is the official PNG conversion. The floor is applied in the forward
    pass only (straight-through), so gradients flow as if there were no quantization.
    """
    pixels = (img * 127.5 + 128).clamp(0, 255)
    return pixels + (pixels.floor() - pixels).detach()


def normalize_pixels(pixels: torch.Tensor, spec: ClassifierSpec) -> torch.Tensor:
    """Classifier-sized pixels in [0, 255] -> network input: (pixel * scale - mean[c]) / std[c]."""
    mean = torch.tensor(spec.intensity["mean"], dtype=pixels.dtype, device=pixels.device).reshape(1, -1, 1, 1)
    std = torch.tensor(spec.intensity["std"], dtype=pixels.dtype, device=pixels.device).reshape(1, -1, 1, 1)
    return (pixels * spec.intensity["scale"] - mean) / std


def uint8_to_input(x: torch.Tensor, spec: ClassifierSpec) -> torch.Tensor:
    """uint8 images NCHW (any size, 1 or 3 channels) -> network input."""
    if x.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {x.dtype}")
    return normalize_pixels(to_classifier_pixels(x.to(torch.float32), spec), spec)


def generated_to_input(img: torch.Tensor, spec: ClassifierSpec,
                       transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Generator output, floats in [-1, 1] NCHW (any size/channels) -> network input, differentiably.

    Equals `uint8_to_input` of the same image saved as PNG by generate.py and reloaded. `transform` (e.g. the
    training augmentation) acts on the classifier-sized pixels before the intensity normalisation.
    """
    if not img.is_floating_point():
        raise ValueError(f"expected float generator output in [-1, 1], got {img.dtype}")
    pixels = to_classifier_pixels(quantize_generated(img.to(torch.float32)), spec)
    return normalize_pixels(pixels if transform is None else transform(pixels), spec)


def logits_to_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Sigmoid of a single abnormal logit ([N]); softmax over several class logits ([N, K])."""
    return torch.sigmoid(logits[:, 0]) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


class SpineClassifier(nn.Module):
    """A frozen classifier: eval mode always, no trainable parameters, batch-norm statistics never updated.

    `forward` takes network input (see `preprocess_*`) and returns logits [N, spec.num_outputs].
    """

    def __init__(self, net: nn.Module, spec: ClassifierSpec, provenance: dict[str, Any] | None = None):
        super().__init__()
        self.net = net
        self.spec = spec
        self.provenance = dict(provenance or {})
        self.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> "SpineClassifier":
        """Ignore requests for training mode: a parent's .train() must not switch batch norm to batch statistics."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        assert logits.shape == (x.shape[0], self.spec.num_outputs), logits.shape
        return logits

    def preprocess_uint8(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images NCHW (any size, 1 or 3 channels) -> network input on this classifier's device."""
        return uint8_to_input(x.to(self.device), self.spec)

    def preprocess_generated(self, img: torch.Tensor,
                             transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Generator output in [-1, 1] -> network input, differentiably; see `generated_to_input`."""
        return generated_to_input(img, self.spec, transform)

    def preprocess(self, img: torch.Tensor) -> torch.Tensor:
        """uint8 -> `preprocess_uint8`; float (generator output in [-1, 1]) -> `preprocess_generated`."""
        return self.preprocess_uint8(img) if img.dtype == torch.uint8 else self.preprocess_generated(img)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """[N] abnormal probability for 'abnormality'; [N, K] class probabilities for 'lesion'."""
        return logits_to_probabilities(logits)


def check_compatible(classifier: SpineClassifier, dataset_label_mode: str | None, c_dim: int,
                     class_names: Sequence[str] | None = None) -> None:
    """Refuse a classifier whose task does not fit a dataset's labels (label mode, class count, class names)."""
    spec = classifier.spec
    problems = []
    if dataset_label_mode is not None and dataset_label_mode != spec.label_mode:
        problems.append(f"label mode {spec.label_mode!r} vs the dataset's {dataset_label_mode!r}")
    if c_dim != len(spec.class_names):
        problems.append(f"{len(spec.class_names)} classes vs conditioning labels of dimension {c_dim}")
    if class_names is not None and list(class_names) != list(spec.class_names):
        problems.append(f"class names {list(spec.class_names)} vs the dataset's {list(class_names)}")
    if problems:
        raise ValueError("classifier does not fit the dataset labels: " + "; ".join(problems))


_PLAIN_TYPES = (str, int, float, bool, type(None))


def _check_plain(obj: Any, where: str) -> None:
    """Refuse anything but dicts/lists of plain values: `weights_only` loading would reject it later."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if type(key) is not str:
                raise TypeError(f"{where}: key {key!r} must be a str")
            _check_plain(value, f"{where}.{key}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            _check_plain(value, f"{where}[{i}]")
    elif type(obj) not in _PLAIN_TYPES:
        raise TypeError(f"{where}: {type(obj).__name__} is not plain data (str, int, float, bool, None, list, dict)")


def save_classifier(path: str | Path, net: nn.Module, spec: ClassifierSpec, provenance: dict[str, Any]) -> None:
    """Write classifier.pkl (plain data only), atomically."""
    _check_plain(provenance, "provenance")
    _check_plain(dict(spec.arch_kwargs), "arch_kwargs")
    data = dict(
        format=FORMAT, arch=spec.arch, arch_kwargs=dict(spec.arch_kwargs), label_mode=spec.label_mode,
        class_names=list(spec.class_names), resolution=spec.resolution, channels=spec.channels,
        intensity=dict(scale=float(spec.intensity["scale"]), mean=[float(v) for v in spec.intensity["mean"]],
                       std=[float(v) for v in spec.intensity["std"]]),
        thresholds=[float(t) for t in spec.thresholds],
        state_dict={k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
        provenance=provenance)
    with dnnlib.atomic_write(path, "wb") as f:
        torch.save(data, f)


def _require(data: dict, key: str, kind: type | tuple[type, ...], path: Any) -> Any:
    if key not in data:
        raise dnnlib.UserError(f"{path}: classifier.pkl field '{key}' is missing")
    if not isinstance(data[key], kind):
        raise dnnlib.UserError(f"{path}: classifier.pkl field '{key}' must be {kind}, got {type(data[key]).__name__}")
    return data[key]


def _spec_from_data(data: dict, path: Any) -> ClassifierSpec:
    """Validate every field of a loaded classifier.pkl and build its spec; errors name the file and field."""
    def bad(field: str, expected: str) -> dnnlib.UserError:
        return dnnlib.UserError(f"{path}: classifier.pkl field '{field}' must be {expected}, got {data.get(field)!r}")

    if data.get("format") != FORMAT:
        raise bad("format", repr(FORMAT))
    arch = _require(data, "arch", str, path)
    if arch not in ARCHITECTURES:
        raise bad("arch", f"one of {ARCHITECTURES}")
    arch_kwargs = _require(data, "arch_kwargs", dict, path)
    if not all(isinstance(k, str) and isinstance(v, (int, float, str, bool)) for k, v in arch_kwargs.items()):
        raise bad("arch_kwargs", "a dict of str -> int/float/str/bool")
    label_mode = _require(data, "label_mode", str, path)
    if label_mode not in LABEL_MODES:
        raise bad("label_mode", f"one of {LABEL_MODES}")
    class_names = _require(data, "class_names", list, path)
    if not all(isinstance(n, str) for n in class_names) or len(class_names) < 2 \
            or (label_mode == "abnormality" and len(class_names) != 2):
        raise bad("class_names", "a list of class-name strings (exactly 2 for 'abnormality')")
    resolution = _require(data, "resolution", int, path)
    channels = _require(data, "channels", int, path)
    if resolution < 8:
        raise bad("resolution", "an int >= 8")
    if channels not in (1, 3):
        raise bad("channels", "1 or 3")
    intensity = _require(data, "intensity", dict, path)
    scale, mean, std = intensity.get("scale"), intensity.get("mean"), intensity.get("std")
    if not (isinstance(scale, float) and scale > 0 and isinstance(mean, list) and isinstance(std, list)
            and len(mean) == len(std) == channels and all(isinstance(v, float) for v in mean + std)
            and all(v > 0 for v in std)):
        raise bad("intensity", f"{{scale: float > 0, mean: [{channels} floats], std: [{channels} floats > 0]}}")
    thresholds = _require(data, "thresholds", list, path)
    expected = 1 if label_mode == "abnormality" else len(class_names)
    if len(thresholds) != expected or not all(isinstance(t, float) for t in thresholds):
        raise bad("thresholds", f"a list of {expected} floats")
    state_dict = _require(data, "state_dict", dict, path)
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()):
        raise bad("state_dict", "a dict of str -> tensor")
    _require(data, "provenance", dict, path)
    return ClassifierSpec(arch=arch, arch_kwargs=arch_kwargs, label_mode=label_mode,
                          class_names=tuple(class_names), resolution=resolution, channels=channels,
                          intensity=dict(scale=scale, mean=mean, std=std), thresholds=tuple(thresholds))


def load_classifier(path: str | Path, device: torch.device | str = "cpu") -> SpineClassifier:
    """Read classifier.pkl safely (`weights_only=True`), validate it, and return the frozen classifier.

    A missing, foreign or damaged file raises `dnnlib.UserError` naming the file and field."""
    from training.serialization import load_weights_only
    data = load_weights_only(path, str(path), "a classifier.pkl")
    if not isinstance(data, dict):
        raise dnnlib.UserError(f"{path}: classifier.pkl must hold a dict, got {type(data).__name__}")
    spec = _spec_from_data(data, path)
    net = build_network(spec.arch, spec.channels, spec.num_outputs, spec.arch_kwargs)
    try:
        net.load_state_dict(data["state_dict"], strict=True)
    except RuntimeError as exc:
        raise dnnlib.UserError(f"{path}: classifier.pkl field 'state_dict' does not fit arch {spec.arch!r}: "
                               f"{exc}") from None
    return SpineClassifier(net, spec, data["provenance"]).to(device)


# ----------------------------------------------------------------------------------------------------------------
# Command line.


@click.group()
def cli() -> None:
    """Train and evaluate spine classifiers (classifier.pkl)."""


@cli.command()
@click.option("--data", required=True, type=click.Path(exists=True), help="Labelled dataset (folder or zip)")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Where to write classifier.pkl")
@click.option("--arch", type=click.Choice(ARCHITECTURES), default="small_cnn", show_default=True)
@click.option("--resolution", type=click.IntRange(min=8), default=None, help="Input size [default: the dataset's]")
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True, help="Maximum epochs")
@click.option("--patience", type=click.IntRange(min=1), default=5, show_default=True,
              help="Stop after this many epochs without a better validation AUC")
@click.option("--batch", "batch_size", type=click.IntRange(min=2), default=32, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--val-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2,
              show_default=True, help="Fraction of studies held out to choose the best epoch")
@click.option("--seed", type=dnnlib.SEED, default=0, show_default=True)
@click.option("--init-weights", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Local state dict of the stock torchvision model (e.g. ImageNet weights)")
@click.option("--device", type=misc.DEVICE, default="cpu", show_default=True)
def train(data: str, out: str, arch: str, resolution: int | None, epochs: int, patience: int, batch_size: int,
          lr: float, val_fraction: float, seed: int, init_weights: str | None, device: str) -> None:
    """Train a classifier on a labelled dataset; the best epoch is chosen on a study-level validation split."""
    from spine.classifier_data import load_labelled_images
    from spine.classifier_training import TrainOptions, train_classifier

    images = load_labelled_images(data)
    dnnlib.remove_stale_temp_files(Path(out).resolve().parent)  # of an earlier run killed mid-write
    options = TrainOptions(arch=arch, resolution=resolution or images.resolution, epochs=epochs, patience=patience,
                           batch_size=batch_size, lr=lr, val_fraction=val_fraction, seed=seed,
                           init_weights=init_weights, device=device)
    result = train_classifier(images, options)
    save_classifier(out, result.net, result.spec, result.provenance)
    click.echo(f"best epoch {result.provenance['best_epoch']}, val AUC {result.provenance['best_val_auc']:.4f} "
               f"-> {out}")


@cli.command()
@click.option("--classifier", "classifier_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--data", required=True, type=click.Path(exists=True), help="Labelled test dataset (folder or zip)")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Metrics JSON")
@click.option("--roc", type=click.Path(dir_okay=False), default=None, help="ROC curve PNG")
@click.option("--n-resamples", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--seed", type=dnnlib.SEED, default=0, show_default=True, help="Bootstrap seed")
@click.option("--batch", "batch_size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--device", type=misc.DEVICE, default="cpu", show_default=True)
def evaluate(classifier_path: str, data: str, out: str, roc: str | None, n_resamples: int, seed: int,
             batch_size: int, device: str) -> None:
    """AUC with a bootstrap interval, sensitivity/specificity (validation threshold and Youden point), ROC."""
    from spine.classifier_data import load_labelled_images, predict_probabilities
    from spine.evaluation import evaluate_scores, roc_curves, save_json, save_roc_plot

    try:
        classifier = load_classifier(classifier_path, device)
    except dnnlib.UserError as exc:
        raise dnnlib.UserError(f"--classifier: {exc}") from None
    images = load_labelled_images(data)
    try:
        check_compatible(classifier, images.label_mode, len(images.class_names), images.class_names)
    except ValueError as exc:
        raise dnnlib.UserError(f"--classifier={classifier_path} on --data={data}: {exc}") from None
    for path in (out, roc):
        if path is not None:  # temp files of an earlier run killed mid-write
            dnnlib.remove_stale_temp_files(Path(path).resolve().parent)
    scores = predict_probabilities(classifier, classifier.spec, images.images, batch_size).numpy()
    labels = images.labels.numpy()
    report = evaluate_scores(labels, scores, images.class_names, thresholds=classifier.spec.thresholds,
                             n_resamples=n_resamples, seed=seed)
    report.update(classifier=str(Path(classifier_path).resolve()), data=str(Path(data).resolve()),
                  data_sha256=images.sha256)
    save_json(report, out)
    if roc is not None:
        save_roc_plot(roc_curves(labels, scores, images.class_names), roc, title=Path(data).name)
    auc = report["auc"] if report["task"] == "binary" else report["macro_auc"]
    click.echo(f"AUC {auc} -> {out}")


if __name__ == "__main__":
    cli()

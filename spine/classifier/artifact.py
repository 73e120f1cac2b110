"""The spine classifier artifact (classifier.pkl): its spec, input mapping and safe save/load.

A classifier is a network plus the exact mapping from image pixels to network input. Both the real-image path
(uint8 PNGs) and the generator path (floats in [-1, 1]) go through the same mapping, so that the clinical loss and
label fidelity see a generated image exactly as the classifier would see it saved as PNG and reloaded.

classifier.pkl is `torch.save` of plain data only (no classes), read back with `weights_only=True`:
    {format: 'spinegan-classifier-v1', arch, arch_kwargs, label_mode, class_names, resolution, channels,
     intensity: {scale, mean, std}, input_norm, thresholds, state_dict, provenance}
Network input = (pixel * scale - mean[c]) / std[c], where pixel is the uint8 value (0..255) after matching the
channel count and resizing to `resolution` (bilinear with antialias), for input_norm 'dataset' (the default, and
what a file without the field means). 'image' standardises each image and channel by its own mean and standard
deviation instead; 'blurred_image' first applies the 5x5 binomial blur ([1, 4, 6, 4, 1] / 16 per axis, edges
replicated). `thresholds` are validation Youden points
on the class probabilities (sigmoid of the logit for 'abnormality', softmax per class for 'lesion').
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import dnnlib
from spine.classifier.models import ARCHITECTURES, build_network

FORMAT = "spinegan-classifier-v1"
LABEL_MODES = ("abnormality", "lesion")
# How pixels are normalised (see the module docstring). Per-image standardisation ignores each radiograph's exposure
# and display window, which vary between acquisitions and carry no finding; the blur also drops pixel-level texture
# (quantum noise, a generator's speckle) finer than the lesions.
INPUT_NORMS = ("dataset", "image", "blurred_image")
MIN_IMAGE_STD = 1e-3  # on the [0, 1] scale: a flat image is centred, not divided by zero
_BINOMIAL = (1.0, 4.0, 6.0, 4.0, 1.0)


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
    input_norm: str = "dataset"  # one of INPUT_NORMS

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
        x = F.interpolate(
            x, size=(spec.resolution, spec.resolution), mode="bilinear", align_corners=False, antialias=True
        )
    return x


def quantize_generated(img: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] -> the uint8 values generate.py would save, as floats.

    floor(clamp(img * 127.5 + 128, 0, 255)) is the official PNG conversion. The floor is applied in the forward
    pass only (straight-through), so gradients flow as if there were no quantization.
    """
    pixels = (img * 127.5 + 128).clamp(0, 255)
    return pixels + (pixels.floor() - pixels).detach()


def normalize_pixels(pixels: torch.Tensor, spec: ClassifierSpec) -> torch.Tensor:
    """Classifier-sized pixels in [0, 255] -> network input, by the spec's input_norm (module docstring)."""
    x = pixels * spec.intensity["scale"]
    if spec.input_norm == "dataset":
        mean = torch.tensor(spec.intensity["mean"], dtype=pixels.dtype, device=pixels.device).reshape(1, -1, 1, 1)
        std = torch.tensor(spec.intensity["std"], dtype=pixels.dtype, device=pixels.device).reshape(1, -1, 1, 1)
        return (x - mean) / std
    if spec.input_norm == "blurred_image":
        x = binomial_blur(x)
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = x.std(dim=(2, 3), keepdim=True, correction=0).clamp(min=MIN_IMAGE_STD)
    return (x - mean) / std


def binomial_blur(x: torch.Tensor) -> torch.Tensor:
    """The 5x5 binomial low-pass of each channel of NCHW floats, edges replicated (differentiable)."""
    taps = torch.tensor(_BINOMIAL, dtype=x.dtype, device=x.device) / sum(_BINOMIAL)
    channels = x.shape[1]
    x = F.pad(x, (2, 2, 2, 2), mode="replicate")
    x = F.conv2d(x, taps.reshape(1, 1, 1, 5).repeat(channels, 1, 1, 1), groups=channels)
    return F.conv2d(x, taps.reshape(1, 1, 5, 1).repeat(channels, 1, 1, 1), groups=channels)


def uint8_to_input(x: torch.Tensor, spec: ClassifierSpec) -> torch.Tensor:
    """uint8 images NCHW (any size, 1 or 3 channels) -> network input."""
    if x.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {x.dtype}")
    return normalize_pixels(to_classifier_pixels(x.to(torch.float32), spec), spec)


def generated_to_input(
    img: torch.Tensor, spec: ClassifierSpec, transform: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> torch.Tensor:
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

    def train(self, mode: bool = True) -> SpineClassifier:
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

    def preprocess_generated(
        self, img: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Generator output in [-1, 1] -> network input, differentiably; see `generated_to_input`."""
        return generated_to_input(img, self.spec, transform)

    def preprocess(self, img: torch.Tensor) -> torch.Tensor:
        """uint8 -> `preprocess_uint8`; float (generator output in [-1, 1]) -> `preprocess_generated`."""
        return self.preprocess_uint8(img) if img.dtype == torch.uint8 else self.preprocess_generated(img)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """[N] abnormal probability for 'abnormality'; [N, K] class probabilities for 'lesion'."""
        return logits_to_probabilities(logits)


def check_compatible(
    classifier: SpineClassifier, dataset_label_mode: str | None, c_dim: int, class_names: Sequence[str] | None = None
) -> None:
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
        format=FORMAT,
        arch=spec.arch,
        arch_kwargs=dict(spec.arch_kwargs),
        label_mode=spec.label_mode,
        class_names=list(spec.class_names),
        resolution=spec.resolution,
        channels=spec.channels,
        intensity=dict(
            scale=float(spec.intensity["scale"]),
            mean=[float(v) for v in spec.intensity["mean"]],
            std=[float(v) for v in spec.intensity["std"]],
        ),
        input_norm=spec.input_norm,
        thresholds=[float(t) for t in spec.thresholds],
        state_dict={k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
        provenance=provenance,
    )
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
    if (
        not all(isinstance(n, str) for n in class_names)
        or len(class_names) < 2
        or (label_mode == "abnormality" and len(class_names) != 2)
    ):
        raise bad("class_names", "a list of class-name strings (exactly 2 for 'abnormality')")
    resolution = _require(data, "resolution", int, path)
    channels = _require(data, "channels", int, path)
    if resolution < 8:
        raise bad("resolution", "an int >= 8")
    if channels not in (1, 3):
        raise bad("channels", "1 or 3")
    intensity = _require(data, "intensity", dict, path)
    scale, mean, std = intensity.get("scale"), intensity.get("mean"), intensity.get("std")
    if not (
        isinstance(scale, float)
        and scale > 0
        and isinstance(mean, list)
        and isinstance(std, list)
        and len(mean) == len(std) == channels
        and all(isinstance(v, float) for v in mean + std)
        and all(v > 0 for v in std)
    ):
        raise bad("intensity", f"{{scale: float > 0, mean: [{channels} floats], std: [{channels} floats > 0]}}")
    input_norm = _require(data, "input_norm", str, path)
    if input_norm not in INPUT_NORMS:
        raise bad("input_norm", f"one of {INPUT_NORMS}")
    thresholds = _require(data, "thresholds", list, path)
    expected = 1 if label_mode == "abnormality" else len(class_names)
    if len(thresholds) != expected or not all(isinstance(t, float) for t in thresholds):
        raise bad("thresholds", f"a list of {expected} floats")
    state_dict = _require(data, "state_dict", dict, path)
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()):
        raise bad("state_dict", "a dict of str -> tensor")
    _require(data, "provenance", dict, path)
    return ClassifierSpec(
        arch=arch,
        arch_kwargs=arch_kwargs,
        label_mode=label_mode,
        class_names=tuple(class_names),
        resolution=resolution,
        channels=channels,
        intensity=dict(scale=scale, mean=mean, std=std),
        thresholds=tuple(thresholds),
        input_norm=input_norm,
    )


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
        raise dnnlib.UserError(
            f"{path}: classifier.pkl field 'state_dict' does not fit arch {spec.arch!r}: {exc}"
        ) from None
    return SpineClassifier(net, spec, data["provenance"]).to(device)

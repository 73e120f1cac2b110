"""Class-contrast matching as a training plug-in (`PLUGIN`, a `training.plugin_options.TrainingPlugin`):
--class-contrast-match, validated (`configure`, which sets args.class_contrast_match) and turned into the generator
term (`build`). Its blur is class-mean matching's default (1.5 pixels), its memory `class_contrast_match.MEMORY`."""

from __future__ import annotations

import math
from typing import Any

import click
import torch

from dnnlib.cli import OptionGroup
from spine.fidelity.class_contrast_match import MEMORY, ClassContrastMatch
from spine.fidelity.options import DEFAULT_BLUR, check_one_class_per_image, real_class_means
from training.loop_plugins import LoopPlugins
from training.plugin_options import Conflict, DeclaredPlugin

SETTING = "class_contrast_match"  # args.class_contrast_match: recorded with the run

OPTIONS = OptionGroup(
    click.option(
        "--class-contrast-match",
        help="Weight of class-contrast matching: the generated classes' blurred mean differences pulled to the real "
        "classes', G's means tracked over its last images (spine.fidelity.class_contrast_match) [default: off]",
        type=float,
        metavar="FLOAT",
    ),
)


def configure(opts: Any, args: Any) -> list[str]:
    """Validate the option; sets args.class_contrast_match (None when off); returns run-name parts."""
    args.class_contrast_match = None
    weight = opts.class_contrast_match
    if weight is None:
        return []
    if not (weight > 0 and math.isfinite(weight)):
        raise ValueError(f"--class-contrast-match={weight}: expected a positive weight")
    check_one_class_per_image(opts, "--class-contrast-match")
    args.class_contrast_match = dict(weight=float(weight), sigma=DEFAULT_BLUR, memory=float(MEMORY))
    return [f"contrast{weight:g}"]


def build(args: Any, device: torch.device) -> LoopPlugins:
    """The class-contrast term as the loop's generator term, its real means from the run's training images."""
    settings = args.get(SETTING)
    if not settings:
        return LoopPlugins()
    term = ClassContrastMatch(real_class_means(args, settings["sigma"]), settings["weight"], settings["memory"])
    return LoopPlugins(generator_terms=(term,))


PLUGIN = DeclaredPlugin(
    SETTING,
    OPTIONS,
    configure,
    build,
    conflicts=(
        Conflict(
            ("class_contrast_match", "dp"),
            "--class-contrast-match with --dp=1: the real class means are a statistic of the private training images",
        ),
    ),
)

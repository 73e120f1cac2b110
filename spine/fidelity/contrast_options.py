"""Class-contrast matching as a training plug-in (`PLUGIN`, a `training.plugin_options.TrainingPlugin`):
--class-contrast-match and --class-contrast-memory, validated (`configure`, which sets args.class_contrast_match) and
turned into the generator term (`build`). Its blur is class-mean matching's default (1.5 pixels)."""

from __future__ import annotations

import math
from typing import Any

import click
import torch

from dnnlib.cli import OptionGroup
from spine.fidelity.class_contrast_match import MEMORY, ClassContrastMatch
from spine.fidelity.options import DEFAULT_BLUR, check_one_class_per_image, real_class_means, refused_under_dp
from training.loop_plugins import LoopPlugins
from training.plugin_options import DeclaredPlugin

SETTING = "class_contrast_match"  # args.class_contrast_match: recorded with the run

OPTIONS = OptionGroup(
    click.option(
        "--class-contrast-match",
        help="Weight of class-contrast matching: the generated classes' blurred mean differences pulled to the real "
        "classes', G's means tracked over its last images (spine.fidelity.class_contrast_match) [default: off]",
        type=float,
        metavar="FLOAT",
    ),
    click.option(
        "--class-contrast-memory",
        help="Images over which G's class means are tracked (an exponential average): fewer follow G sooner, with "
        f"more noise [default: {MEMORY}]",
        type=float,
        metavar="IMAGES",
    ),
)


def configure(opts: Any, args: Any) -> list[str]:
    """Validate the option; sets args.class_contrast_match (None when off); returns run-name parts."""
    args.class_contrast_match = None
    weight, memory = opts.class_contrast_match, opts.class_contrast_memory
    if weight is None:
        if memory is not None:
            raise ValueError("--class-contrast-memory needs --class-contrast-match=<weight>")
        return []
    if not (weight > 0 and math.isfinite(weight)):
        raise ValueError(f"--class-contrast-match={weight}: expected a positive weight")
    if memory is not None and not (memory >= 1 and math.isfinite(memory)):
        raise ValueError(f"--class-contrast-memory={memory}: expected at least 1 image")
    check_one_class_per_image(opts, "--class-contrast-match")
    memory = float(MEMORY if memory is None else memory)
    args.class_contrast_match = dict(weight=float(weight), sigma=DEFAULT_BLUR, memory=memory)
    return [f"contrast{weight:g}" + ("" if memory == MEMORY else f"mem{memory:g}")]


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
    conflicts=(refused_under_dp("class_contrast_match"),),
)

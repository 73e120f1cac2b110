"""Class-mean matching as a training plug-in (`PLUGIN`, a `training.plugin_options.TrainingPlugin`):
--class-mean-match and --class-mean-blur, validated (`configure`, which sets args.class_mean_match) and turned into
the generator term (`build`)."""

from __future__ import annotations

import math
from typing import Any

import click
import torch

from dnnlib.cli import OptionGroup
from spine.fidelity.class_mean_match import ClassMeanMatch, RealClassMeans
from training.loop_plugins import LoopPlugins
from training.plugin_options import Conflict, DeclaredPlugin

SETTING = "class_mean_match"  # args.class_mean_match: recorded with the run (not a training_loop argument)
DEFAULT_BLUR = 1.5  # pixels: where the training images' class difference best matches the population's (module doc)

OPTIONS = OptionGroup(
    click.option(
        "--class-mean-match",
        help="Weight of class-mean matching: each generated class's blurred mean image pulled to the real "
        "class's (spine.fidelity.class_mean_match) [default: off]",
        type=float,
        metavar="FLOAT",
    ),
    click.option(
        "--class-mean-start",
        help="Kimg of training before class-mean matching starts (at weight 300 from the first step it outweighed "
        "D and G drew noise; docs/RESULTS.md AH) [default: 0]",
        type=float,
        metavar="KIMG",
    ),
    click.option(
        "--class-mean-blur",
        help=f"Gaussian sd in pixels under which class means are compared [default: {DEFAULT_BLUR}]",
        type=float,
        metavar="FLOAT",
    ),
)


def configure(opts: Any, args: Any) -> list[str]:
    """Validate the options; sets args.class_mean_match (None when off); returns run-name parts."""
    args.class_mean_match = None
    if opts.class_mean_match is None:
        given = OPTIONS.given(opts, exclude=("class_mean_match",))
        if given:
            raise ValueError(f"{given[0]} needs --class-mean-match=<weight>")
        return []
    weight = opts.class_mean_match
    sigma = DEFAULT_BLUR if opts.class_mean_blur is None else opts.class_mean_blur
    if not (weight > 0 and math.isfinite(weight)):
        raise ValueError(f"--class-mean-match={weight}: expected a positive weight")
    if not (sigma >= 0 and math.isfinite(sigma)):
        raise ValueError(f"--class-mean-blur={sigma}: expected a Gaussian sd >= 0 pixels (0: no blur)")
    start = opts.class_mean_start or 0.0
    if not (start >= 0 and math.isfinite(start)):
        raise ValueError(f"--class-mean-start={start}: expected kimg >= 0")
    check_one_class_per_image(opts, "--class-mean-match")
    args.class_mean_match = dict(weight=float(weight), sigma=float(sigma), start_kimg=float(start))
    return [f"meanmatch{weight:g}" + (f"from{start:g}" if start else "")]


def check_one_class_per_image(opts: Any, flag: str) -> None:
    """A term on class means needs a conditional run whose images have one class each (ValueError naming `flag`)."""
    if not opts.cond:
        raise ValueError(f"{flag} needs a conditional run (--cond=1): it matches each class's mean image")
    from training.dataset import ImageFolderDataset

    if not ImageFolderDataset(opts.data, use_labels=True).has_onehot_labels:
        raise ValueError(
            f"{flag}: {opts.data}/dataset.json has labels of several classes per image; "
            "class means need one class per image"
        )


def real_class_means(args: Any, sigma: float) -> RealClassMeans:
    """The run's training images' blurred class means (both orientations under --mirror=1)."""
    from spine.classifier.data import load_labelled_images

    real = load_labelled_images(args.training_set_kwargs.path)
    return RealClassMeans.from_images(
        real.images, real.labels, len(real.class_names), sigma, bool(args.training_set_kwargs.xflip)
    )


def refused_under_dp(option: str) -> Conflict:
    """A term that reads the training images' class means cannot run under --dp=1 (`option`: its weight's name)."""
    flag = "--" + option.replace("_", "-")
    return Conflict(
        (option, "dp"), f"{flag} with --dp=1: the real class means are a statistic of the private training images"
    )


def build(args: Any, device: torch.device) -> LoopPlugins:
    """The class-mean term as the loop's generator term, its real means from the run's training images."""
    settings = args.get(SETTING)
    if not settings:
        return LoopPlugins()
    term = ClassMeanMatch(
        real_class_means(args, settings["sigma"]), settings["weight"], settings.get("start_kimg", 0.0)
    )
    return LoopPlugins(generator_terms=(term,))


PLUGIN = DeclaredPlugin(
    SETTING,
    OPTIONS,
    configure,
    build,
    conflicts=(refused_under_dp("class_mean_match"),),
)

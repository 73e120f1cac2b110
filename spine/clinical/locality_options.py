"""Class locality as a training plug-in (`PLUGIN`, a `training.plugin_options.TrainingPlugin`): the
--class-locality options, validated against the run (`configure`, which sets args.class_locality) and turned into
the generator term (`build`)."""

from __future__ import annotations

from typing import Any

import click
import torch

from dnnlib.cli import OptionGroup
from training.loop_plugins import LoopPlugins
from training.plugin_options import DeclaredPlugin

SETTING = "class_locality"  # args.class_locality: recorded with the run (not a training_loop argument)

OPTIONS = OptionGroup(
    click.option(
        "--class-locality",
        help="Weight of class locality: the L1 between one latent rendered under two "
        "labels, so that a label changes few pixels (spine.clinical.locality) [default: off]",
        type=float,
        metavar="FLOAT",
    ),
    click.option(
        "--class-locality-power",
        help="Charge per pixel difference d: (|d| + 0.01)^p - 0.01^p; 1 is L1, "
        "below 1 charges faint changes spread over many pixels more [default: 1]",
        type=float,
        metavar="FLOAT",
    ),
    click.option(
        "--class-locality-relative",
        help="Divide each pair's charge by its contrast, so that images fading to grey do not lower "
        "the term [default: false]",
        type=bool,
        metavar="BOOL",
    ),
)


def configure(opts: Any, args: Any) -> list[str]:
    """Validate --class-locality(-power, -relative); sets args.class_locality (None when off); returns run-name
    parts."""
    args.class_locality = None
    weight, power = opts.class_locality, opts.class_locality_power
    if weight is None:
        given = OPTIONS.given(opts, exclude=("class_locality",))
        if given:
            raise ValueError(f"{given[0]} needs --class-locality=<weight>")
        return []
    if not weight > 0:
        raise ValueError(f"--class-locality={weight}: expected a positive weight")
    power = 1.0 if power is None else power
    if not 0 < power <= 1:
        raise ValueError(f"--class-locality-power={power}: expected a power in (0, 1]")
    label_dim = args.dataset_info["label_dim"] if args.training_set_kwargs.use_labels else 0
    if label_dim < 2:
        raise ValueError(
            "--class-locality needs a conditional run with at least 2 classes (--cond=1): it compares "
            "one latent rendered under two labels"
        )
    relative = bool(opts.class_locality_relative)
    args.class_locality = dict(weight=float(weight), power=float(power), relative=relative)
    return [f"locality{weight:g}" + (f"-p{power:g}" if power != 1 else "") + ("-rel" if relative else "")]


def build(args: Any, device: torch.device) -> LoopPlugins:
    """The class-locality term as the loop's generator term, when args.class_locality is set."""
    settings = args.get(SETTING)
    if not settings:
        return LoopPlugins()
    from spine.clinical.locality import ClassLocality

    term = ClassLocality(settings["weight"], power=settings["power"], relative=settings["relative"])
    return LoopPlugins(generator_terms=(term,))


PLUGIN = DeclaredPlugin(SETTING, OPTIONS, configure, build)

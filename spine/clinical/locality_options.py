"""The --class-locality option: declared here (`OPTIONS`, composed into train.py's command), validated against the
run (`configure`, which sets args.class_locality) and turned into the generator term (`build_plugins`)."""

from __future__ import annotations

from typing import Any

import click
import torch

from dnnlib.cli import OptionGroup

SETTING = "class_locality"  # args.class_locality: recorded with the run (not a training_loop argument)

OPTIONS = OptionGroup(
    click.option("--class-locality", help="Weight of class locality: the L1 between one latent rendered under two "
                 "labels, so that a label changes few pixels (spine.clinical.locality) [default: off]", type=float,
                 metavar="FLOAT"),
)


def configure(opts: Any, args: Any) -> list[str]:
    """Validate --class-locality; sets args.class_locality (None when off); returns run-name parts."""
    args.class_locality = None
    weight = opts.class_locality
    if weight is None:
        return []
    if not weight > 0:
        raise ValueError(f"--class-locality={weight}: expected a positive weight")
    label_dim = args.dataset_info["label_dim"] if args.training_set_kwargs.use_labels else 0
    if label_dim < 2:
        raise ValueError("--class-locality needs a conditional run with at least 2 classes (--cond=1): it compares "
                         "one latent rendered under two labels")
    args.class_locality = dict(weight=float(weight))
    return [f"locality{weight:g}"]


def build_plugins(args: Any, device: torch.device) -> dict:
    """The class-locality term as the loop's generator term, when args.class_locality is set."""
    settings = args.get(SETTING)
    if not settings:
        return {}
    from spine.clinical.locality import ClassLocality
    return dict(generator_terms=[ClassLocality(settings["weight"])])

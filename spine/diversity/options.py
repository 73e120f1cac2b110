"""Mode seeking as a training plug-in (`PLUGIN`, a `training.plugin_options.TrainingPlugin`): --mode-seeking,
validated (`configure`, which sets args.mode_seeking) and turned into the generator term (`build`)."""

from __future__ import annotations

from typing import Any

import click
import torch

from dnnlib.cli import OptionGroup
from training.loop_plugins import LoopPlugins
from training.plugin_options import DeclaredPlugin

SETTING = "mode_seeking"  # args.mode_seeking: recorded with the run (not a training_loop argument)

OPTIONS = OptionGroup(
    click.option(
        "--mode-seeking",
        help="Weight of mode seeking: two latents under one label must render apart "
        "(spine.diversity.mode_seeking; Mao et al. use 1) [default: off]",
        type=float,
        metavar="FLOAT",
    ),
)


def configure(opts: Any, args: Any) -> list[str]:
    """Validate --mode-seeking; sets args.mode_seeking (None when off); returns run-name parts."""
    args.mode_seeking = None
    if opts.mode_seeking is None:
        return []
    if not opts.mode_seeking > 0:
        raise ValueError(f"--mode-seeking={opts.mode_seeking}: expected a positive weight")
    args.mode_seeking = dict(weight=float(opts.mode_seeking))
    return [f"modeseek{opts.mode_seeking:g}"]


def build(args: Any, device: torch.device) -> LoopPlugins:
    """The mode-seeking term as the loop's generator term, when args.mode_seeking is set."""
    settings = args.get(SETTING)
    if not settings:
        return LoopPlugins()
    from spine.diversity.mode_seeking import ModeSeeking

    return LoopPlugins(generator_terms=(ModeSeeking(settings["weight"]),))


PLUGIN = DeclaredPlugin(SETTING, OPTIONS, configure, build)

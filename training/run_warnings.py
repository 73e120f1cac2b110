"""One-line warnings about a training run that will start but is unlikely to be what the user meant: printed by
train.py before the run folder exists (and in a dry run), never a refusal."""

from __future__ import annotations

import dnnlib

FEW_IMAGES = 100  # a dataset this small is memorised, whatever the augmentation (ADA's smallest sets had 1k images)


def run_warnings(args: dnnlib.EasyDict) -> list[str]:
    """Warnings for train.py's configured `args` that concern the training itself (a tiny dataset); the metrics'
    own caveats are `metrics.caveats`'."""
    warnings = []
    count = args.training_set_kwargs["max_size"]
    if count < FEW_IMAGES:
        warnings.append(
            f"--data={args.training_set_kwargs['path']}: training on {count} image"
            f"{'' if count == 1 else 's'}; a GAN memorises so few (ADA's smallest datasets had 1,000)"
        )
    return warnings

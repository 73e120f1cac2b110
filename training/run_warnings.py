"""One-line warnings about a training run that will start but is unlikely to be what the user meant: printed by
train.py before the run folder exists (and in a dry run), never a refusal."""

from __future__ import annotations

import dnnlib
from metrics.caveats import cpu_cost_warnings, small_count_warnings

FEW_IMAGES = 100  # a dataset this small is memorised, whatever the augmentation (ADA's smallest sets had 1k images)


def run_warnings(args: dnnlib.EasyDict, on_gpu: bool) -> list[str]:
    """Warnings for train.py's configured `args`: a tiny dataset, metrics biased by a small count, metrics that take
    hours on a CPU."""
    warnings = []
    count = args.training_set_kwargs["max_size"]
    if count < FEW_IMAGES:
        warnings.append(f"--data={args.training_set_kwargs['path']}: training on {count} image"
                        f"{'' if count == 1 else 's'}; a GAN memorises so few (ADA's smallest datasets had 1,000)")
    return warnings + small_count_warnings(args.metrics) + cpu_cost_warnings(args.metrics, on_gpu)

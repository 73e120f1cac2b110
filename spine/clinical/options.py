"""The --clinical-* options: declared here (`OPTIONS`, composed into train.py's command), validated against the
dataset (`configure`, which sets args.clinical) and turned into the generator term (`build_plugins`).

The classifier is checked against the dataset's labels in `configure`, so a mismatch stops the run before any
training starts.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import click
import torch

from dnnlib.cli import OptionGroup

DEFAULT_WEIGHT = 0.1  # the paper's
SETTING = "clinical"  # args.clinical: this plug-in's settings, recorded with the run (not a training_loop argument)

OPTIONS = OptionGroup(
    click.option("--clinical-loss", help="classifier.pkl judging each generated image against its label",
                 type=click.Path(exists=True, dir_okay=False), metavar="PKL"),
    click.option("--clinical-weight", help=f"Weight of the clinical loss [default: {DEFAULT_WEIGHT}]", type=float,
                 metavar="FLOAT"),
    click.option("--clinical-augment", help="Judge each image through a random flip/rotate/crop of the "
                 "classifier's training [default: false]", type=bool, metavar="BOOL"),
)


def configure(opts: Any, args: Any) -> list[str]:
    """Validate --clinical-loss/--clinical-weight/--clinical-augment; sets args.clinical; returns run-name parts.

    Raises ValueError naming the offending option.
    """
    args.clinical = None
    if opts.clinical_loss is None:
        given = OPTIONS.given(opts, exclude=("clinical_loss",))
        if given:
            raise ValueError(f"{given[0]} needs --clinical-loss=<classifier.pkl>")
        return []
    from spine.classifier.artifact import check_compatible, load_classifier
    from training.dataset import ImageFolderDataset
    weight = DEFAULT_WEIGHT if opts.clinical_weight is None else opts.clinical_weight
    if not weight > 0:
        raise ValueError(f"--clinical-weight={weight}: expected a positive weight (the paper's is {DEFAULT_WEIGHT})")
    if not opts.cond:
        raise ValueError("--clinical-loss needs a conditional run (--cond=1): it judges each image against its label")
    try:
        classifier = load_classifier(opts.clinical_loss)
        dataset = ImageFolderDataset(opts.data, use_labels=True)
        meta = dataset.metadata
        check_compatible(classifier, meta.get("label_mode"), dataset.label_dim, meta.get("class_names"))
    except ValueError as exc:
        raise ValueError(f"--clinical-loss={opts.clinical_loss}: {exc}") from exc
    with open(opts.clinical_loss, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    args.clinical = dict(classifier=os.path.abspath(opts.clinical_loss), classifier_sha256=digest,
                         weight=float(weight), augment=bool(opts.clinical_augment),
                         label_mode=classifier.spec.label_mode, class_names=list(classifier.spec.class_names))
    return [f"clinical{weight:g}" + ("-aug" if opts.clinical_augment else "")]


def build_plugins(args: Any, device: torch.device) -> dict:
    """The clinical loss as the loop's generator term, when args.clinical is set."""
    clinical = args.get("clinical")
    if not clinical:
        return {}
    from spine.classifier.artifact import load_classifier
    from spine.clinical.loss import ClinicalLoss
    classifier = load_classifier(clinical["classifier"], device)
    return dict(generator_terms=[ClinicalLoss(classifier, clinical["weight"], augment=clinical.get("augment", False))])

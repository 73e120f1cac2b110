"""The clinical loss as a training plug-in (`PLUGIN`, a `training.plugin_options.TrainingPlugin`): its --clinical-*
options, validated against the dataset (`configure`, which sets args.clinical) and turned into generator terms
(`build`).

The classifier is checked against the dataset's labels in `configure`, so a mismatch stops the run before any
training starts.
"""

from __future__ import annotations

import os
from typing import Any

import click
import torch

import dnnlib.util
from dnnlib.cli import OptionGroup
from training.loop_plugins import LoopPlugins
from training.plugin_options import DeclaredPlugin

DEFAULT_WEIGHT = 0.1  # the paper's
SETTING = "clinical"  # args.clinical: this plug-in's settings, recorded with the run (not a training_loop argument)

OPTIONS = OptionGroup(
    click.option(
        "--clinical-loss",
        help="classifier.pkl judging each generated image against its label",
        type=click.Path(exists=True, dir_okay=False),
        metavar="PKL",
    ),
    click.option(
        "--clinical-weight",
        help=f"Weight of the clinical loss [default: {DEFAULT_WEIGHT}]",
        type=float,
        metavar="FLOAT",
    ),
    click.option(
        "--clinical-augment",
        help="Judge each image through a random flip/rotate/crop of the classifier's training [default: false]",
        type=bool,
        metavar="BOOL",
    ),
    click.option(
        "--clinical-match",
        help="Weight of class feature matching: each class's mean judge features "
        "pulled to the real class's (spine.clinical.feature_match) [default: 0, off]",
        type=float,
        metavar="FLOAT",
    ),
)


def configure(opts: Any, args: Any) -> list[str]:
    """Validate the --clinical-* options; sets args.clinical; returns run-name parts.

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
    match = opts.clinical_match or 0.0
    if not match >= 0:
        raise ValueError(f"--clinical-match={match}: expected a weight >= 0 (0 turns class feature matching off)")
    if not (weight > 0 or (weight == 0 and match > 0)):
        raise ValueError(
            f"--clinical-weight={weight}: expected a positive weight (the paper's is {DEFAULT_WEIGHT}), "
            f"or 0 together with --clinical-match > 0"
        )
    if not opts.cond:
        raise ValueError("--clinical-loss needs a conditional run (--cond=1): it judges each image against its label")
    try:
        classifier = load_classifier(opts.clinical_loss)
        dataset = ImageFolderDataset(opts.data, use_labels=True)
        meta = dataset.metadata
        check_compatible(classifier, meta.get("label_mode"), dataset.label_dim, meta.get("class_names"))
    except ValueError as exc:
        raise ValueError(f"--clinical-loss={opts.clinical_loss}: {exc}") from exc
    released = match > 0 and _check_release(opts, classifier)
    digest = dnnlib.util.file_digest(opts.clinical_loss)
    args.clinical = dict(
        classifier=os.path.abspath(opts.clinical_loss),
        classifier_sha256=digest,
        weight=float(weight),
        augment=bool(opts.clinical_augment),
        match=float(match),
        match_released=released,
        label_mode=classifier.spec.label_mode,
        class_names=list(classifier.spec.class_names),
    )
    return [f"clinical{weight:g}" + ("-aug" if opts.clinical_augment else "") + (f"-match{match:g}" if match else "")]


def _check_release(opts: Any, classifier: Any) -> bool:
    """Whether class feature matching takes the judge's DP release of the class means (a --dp=1 run), else the
    training images' means. Under DP the release is required, and the run's --data declared public: the features'
    spread is read from it."""
    if not opts.get("dp"):
        return False
    if "class_features" not in classifier.provenance:
        raise ValueError(
            f"--clinical-match with --dp=1: the judge --clinical-loss={opts.clinical_loss} carries no DP release of "
            f"the class means (train it with python -m spine.dp.judge --release-features=SIGMA); the training "
            f"images' means would be released without noise"
        )
    if not opts.get("dp_data_public"):
        raise ValueError(
            "--clinical-match with --dp=1 needs --dp-data-public=1: the features' spread is read from --data, "
            "which must then be public"
        )
    return True


def build(args: Any, device: torch.device) -> LoopPlugins:
    """The clinical loss (and class feature matching) as the loop's generator terms, when args.clinical is set."""
    clinical = args.get(SETTING)
    if not clinical:
        return LoopPlugins()
    from spine.classifier.artifact import load_classifier
    from spine.clinical.loss import ClinicalLoss

    classifier = load_classifier(clinical["classifier"], device)
    terms: list[Any] = []
    if clinical["weight"] > 0:
        terms.append(ClinicalLoss(classifier, clinical["weight"], augment=clinical["augment"]))
    if clinical["match"] > 0:
        terms.append(_feature_match(classifier, args, clinical["match"], clinical.get("match_released", False)))
    return LoopPlugins(generator_terms=tuple(terms))


def _feature_match(classifier: Any, args: Any, weight: float, released: bool) -> Any:
    """The class feature-matching term, its real class means taken from the run's training images, or from the
    judge's DP release (the training images, public, then give only the features' spread)."""
    from spine.classifier.data import load_labelled_images
    from spine.clinical.feature_match import ClassFeatureMatch, RealClassFeatures

    real = load_labelled_images(args.training_set_kwargs.path)
    if released:
        stats = RealClassFeatures.from_release(classifier, classifier.provenance["class_features"], real.images)
    else:
        stats = RealClassFeatures.from_images(classifier, real.images, real.labels, len(real.class_names))
    return ClassFeatureMatch(classifier, stats, weight)


PLUGIN = DeclaredPlugin(
    SETTING,
    OPTIONS,
    configure,
    build,
    path_options=("clinical_loss",),
)

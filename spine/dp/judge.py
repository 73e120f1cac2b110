"""The clinical loss's judge trained with DP-SGD (Opacus), so that one epsilon covers the whole DP pipeline.

    python -m spine.dp.judge --data=train.zip --out=judge.pkl --epsilon=2 --delta=1e-5

A judge trained the ordinary way (`spine.classifier`) reads the private images without privacy, five ways over:
its gradients, the dataset's pixel mean/std (input normalisation), the class counts (loss weights), the best epoch
and the Youden thresholds (chosen on a validation split of the same images). Here each is removed or privatised:

  * DP-SGD by Opacus: Poisson sampling of images at q = 1 / ceil(N / batch), per-sample gradients clipped to C,
    Gaussian noise sigma C, RDP accountant; sigma calibrated so that `epochs` epochs end at `epsilon` (at `delta`);
  * SmallCNN with GroupNorm (BatchNorm couples the records of a batch), per-image input normalisation;
  * an unweighted loss, no validation split, the last epoch kept, thresholds at 0.5 (or 1/K): nothing is chosen on
    the private images.
The per-sample flip/rotate/crop augmentation stays (a function of one record and public randomness).

classifier.pkl's provenance carries the account (`privacy`: the accountant's history [[sigma, q, steps]], delta,
epsilon, C, unit 'image'); train.py --dp=1 --clinical-loss=<it> composes it with D's steps into one epsilon
(`spine.dp.accounting.PrivacyAccount.composed_with`). The noise comes from torch's seeded RNG (not cryptographic).
--release-features=SIGMA adds a one-shot DP release of the private images' class-mean features (`class_features`
in the provenance, one more entry [sigma, 1, 1] in the account; `spine.dp.class_features`), which train.py
--clinical-match then matches under DP.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import click
import torch
from tqdm import tqdm

import dnnlib
from spine.classifier.artifact import (
    ClassifierSpec,
    SpineClassifier,
    normalize_pixels,
    save_classifier,
    to_classifier_pixels,
)
from spine.classifier.data import LabelledImages, load_labelled_images
from spine.classifier.models import build_network
from spine.classifier.training import TrainResult, augment_batch
from spine.dp import accounting, class_features
from torch_utils import misc

JUDGE_ARCHS = ("small_cnn", "patch_cnn")  # the architectures with a GroupNorm variant
JUDGE_INPUT_NORMS = ("image", "dataset")
# 'dataset' normalisation of a DP judge: a fixed affine map on [0, 1] pixels, read from no image (an ordinary
# classifier's dataset mean and sd are statistics of the private images), so absolute intensity reaches the judge.
FIXED_INTENSITY_MEAN, FIXED_INTENSITY_STD = 0.5, 0.25
ACCOUNTANT = "rdp"


@dataclasses.dataclass(frozen=True)
class PrivateJudgeOptions:
    """DP-SGD settings of the judge; `batch_size` is the expected batch (Poisson)."""

    epsilon: float
    delta: float
    max_grad_norm: float = 1.0
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    arch: str = "small_cnn"
    input_norm: str = "image"
    resolution: int = 32
    seed: int = 0
    device: str = "cpu"
    flip_prob: float = 0.3  # the ordinary judge's augmentation (spine.classifier.training.TrainOptions)
    max_rotate_deg: float = 5.0
    crop_scale: tuple[float, float] = (0.8, 1.0)
    release_features: float = 0.0  # noise multiplier of the one-shot class-feature release (0: none)
    release_clip: float = 1.0

    def __post_init__(self) -> None:
        if self.arch not in JUDGE_ARCHS:
            raise ValueError(f"--arch={self.arch}: a DP judge needs one of {JUDGE_ARCHS} (built with GroupNorm)")
        if self.input_norm not in JUDGE_INPUT_NORMS:
            raise ValueError(f"--input-norm={self.input_norm}: a DP judge needs one of {JUDGE_INPUT_NORMS}")
        if not self.epsilon > 0:
            raise ValueError(f"--epsilon must be positive, got {self.epsilon}")
        if not 0 < self.delta < 1:
            raise ValueError(f"--delta must be in (0, 1), got {self.delta}")
        if self.release_features < 0 or not self.release_clip > 0:
            raise ValueError(
                f"--release-features={self.release_features} --release-clip={self.release_clip}: expected a "
                f"noise multiplier >= 0 (0: no release) and a positive clip"
            )


def judge_spec(data: LabelledImages, options: PrivateJudgeOptions) -> ClassifierSpec:
    """GroupNorm network, per-image or fixed normalisation, thresholds 0.5 (binary) or 1/K: nothing read from the
    images."""
    k, channels = len(data.class_names), int(data.images.shape[1])
    binary = data.label_mode == "abnormality"
    mean, std = (FIXED_INTENSITY_MEAN, FIXED_INTENSITY_STD) if options.input_norm == "dataset" else (0.0, 1.0)
    return ClassifierSpec(
        arch=options.arch,
        arch_kwargs=dict(norm="group"),
        label_mode=data.label_mode,
        class_names=tuple(data.class_names),
        resolution=options.resolution,
        channels=channels,
        intensity=dict(scale=1 / 255, mean=[mean] * channels, std=[std] * channels),  # unused by input_norm 'image'
        thresholds=(0.5,) if binary else tuple([1 / k] * k),
        input_norm=options.input_norm,
    )


def steps_per_epoch(num_images: int, batch_size: int) -> int:
    """Opacus's Poisson loader: len(loader) = ceil(N / batch) draws per epoch, each at q = 1 / that."""
    return math.ceil(num_images / batch_size)


def train_private_judge(data: LabelledImages, options: PrivateJudgeOptions) -> TrainResult:
    """DP-SGD training of the judge on every image of `data`; the last epoch's network and its account."""
    from opacus import PrivacyEngine  # imported on use: opacus takes seconds to import

    if len(data.images) < 2:
        raise ValueError(f"{data.source}: a DP judge needs at least 2 images, got {len(data.images)}")
    spec = judge_spec(data, options)
    per_epoch = steps_per_epoch(len(data.images), options.batch_size)
    sample_rate, steps = 1 / per_epoch, per_epoch * options.epochs
    sigma = accounting.calibrate_noise_multiplier(options.epsilon, options.delta, sample_rate, steps, ACCOUNTANT)
    device = torch.device(options.device)
    binary = spec.num_outputs == 1
    with torch.random.fork_rng(devices=[]):  # seeded noise and sampling without disturbing the caller's RNG
        torch.manual_seed(options.seed)
        generator = torch.Generator().manual_seed(options.seed)
        net = build_network(spec.arch, spec.channels, spec.num_outputs, spec.arch_kwargs).to(device)
        optimizer = torch.optim.Adam(net.parameters(), lr=options.lr)
        indices = torch.utils.data.TensorDataset(torch.arange(len(data.images)))
        loader = torch.utils.data.DataLoader(indices, batch_size=options.batch_size)
        engine = PrivacyEngine(accountant=ACCOUNTANT)
        model, optimizer, loader = engine.make_private(
            module=net.train(),
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=sigma,
            max_grad_norm=options.max_grad_norm,
            poisson_sampling=True,
        )
        loss_fn = torch.nn.BCEWithLogitsLoss() if binary else torch.nn.CrossEntropyLoss()
        for _ in tqdm(range(options.epochs), desc=f"DP judge {options.arch}", unit="epoch"):
            for (idx,) in loader:
                pixels = to_classifier_pixels(data.images[idx].to(device, torch.float32), spec)
                if len(idx):  # an empty Poisson draw still steps (noise only) and counts, as Opacus expects
                    pixels = augment_batch(
                        pixels, generator, options.flip_prob, options.max_rotate_deg, options.crop_scale
                    )
                logits = model(normalize_pixels(pixels, spec))
                labels = data.labels[idx].to(device)
                loss = loss_fn(logits[:, 0], labels.float()) if binary else loss_fn(logits, labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        history = [[float(s), float(q), int(n)] for s, q, n in engine.accountant.history]
    net.eval()
    privacy = dict(
        accountant=ACCOUNTANT,
        history=history,
        delta=options.delta,
        epsilon=accounting.composed_epsilon(tuple(map(tuple, history)), options.delta, ACCOUNTANT),
        max_grad_norm=options.max_grad_norm,
        unit="image",
        secure_rng=False,
    )
    provenance = dict(
        dataset=data.source,
        dataset_sha256=data.sha256,
        num_train=len(data.images),
        options=dict(dataclasses.asdict(options), crop_scale=list(options.crop_scale)),
        selection="none: the last epoch is kept and the thresholds are 0.5 (1/K); choosing either on the private "
        "images would be outside the account",
        privacy=privacy,
    )
    return TrainResult(net=net, spec=spec, provenance=provenance)


def add_feature_release(result: TrainResult, data: LabelledImages, options: PrivateJudgeOptions) -> TrainResult:
    """The judge with a one-shot DP release of the private images' class-mean features in its provenance
    (`class_features`), the release composed into its account (`spine.dp.class_features`)."""
    classifier = SpineClassifier(result.net, result.spec)
    release = class_features.release_class_features(
        classifier, data, options.release_clip, options.release_features, seed=options.seed + 1
    )
    privacy = dict(result.provenance["privacy"])
    privacy["history"] = [*privacy["history"], class_features.release_mechanism(options.release_features)]
    privacy["epsilon"] = accounting.composed_epsilon(
        tuple(map(tuple, privacy["history"])), privacy["delta"], privacy["accountant"]
    )
    provenance = dict(result.provenance, privacy=privacy, class_features=release)
    return TrainResult(net=result.net, spec=result.spec, provenance=provenance)


@click.command()
@click.option("--data", required=True, type=click.Path(exists=True), help="Private labelled dataset (folder or zip)")
@click.option("--out", required=True, type=dnnlib.OutputPath(dir_okay=False), help="Where to write classifier.pkl")
@click.option("--epsilon", required=True, type=click.FloatRange(min=0, min_open=True), help="The judge's epsilon")
@click.option("--delta", required=True, type=click.FloatRange(0, 1, min_open=True, max_open=True))
@click.option("--max-grad-norm", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--batch", "batch_size", type=click.IntRange(min=1), default=64, show_default=True, help="Expected")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--arch", type=click.Choice(JUDGE_ARCHS), default="small_cnn", show_default=True)
@click.option(
    "--input-norm",
    type=click.Choice(JUDGE_INPUT_NORMS),
    default="image",
    show_default=True,
    help="image: each image standardised (blind to absolute intensity); dataset: a fixed map, read from no image",
)
@click.option("--resolution", type=click.IntRange(min=8), default=None, help="Input size [default: the dataset's]")
@click.option("--seed", type=dnnlib.SEED, default=0, show_default=True)
@click.option("--device", type=misc.DEVICE, default="cpu", show_default=True)
@click.option(
    "--release-features",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Noise multiplier of a one-shot DP release of the class-mean features (for train.py --clinical-match "
    "under DP); 0: no release",
)
@click.option(
    "--release-clip",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="L2 bound on each image's features in the release",
)
def main(data: str, out: str, resolution: int | None, **settings: object) -> None:
    """Train the clinical loss's judge with DP-SGD on private images; its account goes into classifier.pkl."""
    images = load_labelled_images(data)
    if not settings["delta"] < 1 / len(images.images):
        raise dnnlib.UserError(
            f"--delta={settings['delta']}: expected delta < 1/N = {1 / len(images.images):.3g} "
            f"(N = {len(images.images)} images)"
        )
    dnnlib.remove_stale_temp_files(Path(out).resolve().parent)
    options = PrivateJudgeOptions(resolution=resolution or images.resolution, **settings)
    result = train_private_judge(images, options)
    if options.release_features > 0:
        result = add_feature_release(result, images, options)
    save_classifier(out, result.net, result.spec, result.provenance)
    privacy = result.provenance["privacy"]
    sigma, q, steps = privacy["history"][0]
    release = (
        f", plus the class-feature release (sigma {options.release_features:g})" if len(privacy["history"]) > 1 else ""
    )
    click.echo(
        f"DP judge: epsilon {privacy['epsilon']:.4f} at delta {privacy['delta']:g} after {steps} steps "
        f"(sigma {sigma:.4g}, q {q:.4g}){release} -> {out}"
    )


if __name__ == "__main__":
    main()

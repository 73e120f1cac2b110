"""Privacy audit of a generator: memorisation and membership inference against its training data.

For generated images and two real sets from the same distribution, the training images (members) and held-out
images never used for training or model selection (non-members), the larger of the two cut to the smaller's size,
in pixel space and in a feature space
(the spine classifier's penultimate features when --classifier is given, else a seeded random-convolution
embedding):
  * distances from each generated image to its nearest training and nearest held-out image;
  * the share of generated images closer to a training image than to any held-out one (about 0.5 when the
    generator does not favour its training data, 1.0 when it copies it);
  * a membership-inference attack scoring each real image by minus its distance to the nearest generated image
    (GAN-Leaks' black-box attack): ROC AUC and TPR at 1% FPR for members vs non-members (0.5 / 0.01 = chance);
  * with --inversion N, the white-box attack by inversion (GAN-Leaks' latent optimisation, Chen et al., CCS 2020):
    N members and N non-members are projected into the generator's W space (training/projection.py, the
    weight-free pixel-pyramid distance of metrics/perceptual.py, --inversion-steps steps, one batch); a real
    image's score is minus its reconstruction distance (a generator reproduces its training images better);
    ROC AUC and TPR at 1% FPR as above. Cost: steps x one forward and backward pass of the generator on 2N images
    (the report states the seconds);
  * the closest generated/training pairs as a PNG for a human look;
  * the stated (epsilon, delta) from the snapshot's metadata, the most any membership attack can reach under it
    (TPR at 1% FPR), and what it does not cover.
Outputs privacy_audit.json, privacy_audit.md and closest_pairs.png in --outdir (written atomically).

    python -m spine.evaluation.privacy_audit --network=run/network-snapshot-000100.pkl --train=data/train.zip \\
        --heldout=data/heldout.zip --outdir=audit [--num=2000] [--classifier=classifier.pkl]
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from typing import Any

import click
import numpy as np
import torch
import tqdm

import dnnlib
from metrics.perceptual import pixel_distance
from metrics.projection import ProjectionOptions, project
from spine.dp.ledger import JUDGE_OUTSIDE_ACCOUNT, OUTSIDE_ACCOUNT
from spine.scoring import roc_auc, roc_curve
from training.image_grid import save_image_grid

Embedding = Callable[[torch.Tensor], torch.Tensor]  # images [N,C,H,W] in [-1, 1] -> features [N, D]

# What the account leaves out (spine.dp.ledger); a snapshot's account names its own list (`outside_account`), older
# snapshots get this one, plus the judge when they record a clinical loss.
NOT_COVERED = list(OUTSIDE_ACCOUNT)
AUDIT_FPR = 0.01  # the false-positive rate at which the membership attack's TPR is reported


# ---- features --------------------------------------------------------------------------------------------------


def pixel_embedding(img: torch.Tensor) -> torch.Tensor:
    return img.flatten(1)


def random_conv_embedding(channels: int, seed: int) -> Embedding:
    """A fixed random 3-layer conv net (seeded) with global pooling: a crude, data-free perceptual space."""
    generator = torch.Generator().manual_seed(seed)
    shapes = [(16, channels), (32, 16), (64, 32)]
    weights = [torch.randn(o, i, 3, 3, generator=generator) / (i * 9) ** 0.5 for o, i in shapes]

    def embed(img: torch.Tensor) -> torch.Tensor:
        x = img
        for w in weights:
            x = torch.nn.functional.conv2d(x, w.to(x.device), stride=2, padding=1).relu()
        return torch.cat([x.mean([2, 3]), x.amax([2, 3])], dim=1)

    return embed


def classifier_embedding(path: str, device: torch.device) -> Embedding:
    """Input of the spine classifier's last linear layer (its penultimate features)."""
    from spine.classifier.artifact import load_classifier

    try:
        classifier = load_classifier(path, device)
    except dnnlib.UserError as exc:
        raise dnnlib.UserError(f"--classifier: {exc}") from None
    linears = [m for m in classifier.net.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise dnnlib.UserError(f"--classifier={path}: the network has no linear layer to take features from")
    captured: list[torch.Tensor] = []
    linears[-1].register_forward_hook(lambda module, args, out: captured.append(args[0].flatten(1)))

    @torch.no_grad()
    def embed(img: torch.Tensor) -> torch.Tensor:
        captured.clear()
        classifier(classifier.preprocess_generated(img.to(device)))
        return captured[-1].cpu()

    return embed


def embed_all(embed: Embedding, images: torch.Tensor, batch: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([embed(chunk).float() for chunk in images.split(batch)])


# ---- metrics ---------------------------------------------------------------------------------------------------


def nearest(queries: torch.Tensor, refs: torch.Tensor, batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(distance, index) of each query's nearest reference row (Euclidean), in float64; computed directly, not via
    the matrix-product expansion, so a copy of a reference is at distance exactly 0."""
    dists, idx = [], []
    for chunk in queries.split(batch):
        d = torch.cdist(chunk.double(), refs.double(), compute_mode="donot_use_mm_for_euclid_dist")
        m = d.min(dim=1)
        dists.append(m.values)
        idx.append(m.indices)
    return torch.cat(dists).numpy(), torch.cat(idx).numpy()


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr: float) -> float:
    """Highest true-positive rate of any threshold whose false-positive rate is at most `fpr`."""
    curve = roc_curve(labels, scores)
    ok = curve["fpr"] <= fpr + 1e-12
    return float(curve["tpr"][ok].max()) if ok.any() else 0.0


def membership_figures(member_score: np.ndarray, nonmember_score: np.ndarray) -> dict[str, float]:
    """ROC AUC and TPR at AUDIT_FPR of a membership score (higher = more likely a member)."""
    labels = np.concatenate([np.ones(len(member_score)), np.zeros(len(nonmember_score))])
    scores = np.concatenate([member_score, nonmember_score])
    return dict(mia_auc=roc_auc(labels, scores), mia_tpr_at_1pct_fpr=tpr_at_fpr(labels, scores, AUDIT_FPR))


def space_report(generated: torch.Tensor, train: torch.Tensor, heldout: torch.Tensor) -> dict[str, Any]:
    """Memorisation and membership-inference figures in one feature space (rows = images)."""
    d_train, nn_train = nearest(generated, train)
    d_heldout, _ = nearest(generated, heldout)
    figures = membership_figures(-nearest(train, generated)[0], -nearest(heldout, generated)[0])
    return dict(
        share_closer_to_train=float(np.mean(d_train < d_heldout)),
        generated_to_train=dict(mean=float(d_train.mean()), median=float(np.median(d_train)), min=float(d_train.min())),
        generated_to_heldout=dict(
            mean=float(d_heldout.mean()), median=float(np.median(d_heldout)), min=float(d_heldout.min())
        ),
        **figures,
        _closest=np.argsort(d_train, kind="stable"),
        _nn_train=nn_train,
    )


def inversion_attack(
    G: torch.nn.Module,
    train: torch.Tensor,
    heldout: torch.Tensor,
    num: int,
    steps: int,
    seed: int,
    device: torch.device,
) -> dict[str, Any]:
    """Membership inference by inversion: `num` members and `num` non-members (seeded subsets) projected into W
    in one batch; score = minus the reconstruction distance. Returns the figures, the distances and the cost."""
    generator = torch.Generator().manual_seed(seed)
    num = min(num, len(train), len(heldout))
    chosen = [x[torch.randperm(len(x), generator=generator)[:num]] for x in (train, heldout)]
    targets = ((torch.cat(chosen) + 1) * 127.5).to(device)
    start = time.time()
    result = project(G, targets, pixel_distance(), ProjectionOptions(num_steps=steps, optimize_noise=False, seed=seed))
    seconds = time.time() - start
    distances = result.distances.double().cpu().numpy()
    members, nonmembers = distances[:num], distances[num:]
    return dict(
        membership_figures(-members, -nonmembers),
        num_per_set=num,
        steps=steps,
        distance=pixel_distance().description,
        seconds=round(seconds, 1),
        member_distance_median=float(np.median(members)),
        nonmember_distance_median=float(np.median(nonmembers)),
    )


def audit(
    generated: torch.Tensor,
    train: torch.Tensor,
    heldout: torch.Tensor,
    embeddings: dict[str, Embedding],
    batch: int = 64,
) -> dict[str, dict[str, Any]]:
    """{space name: space_report} for images in [-1, 1]; 'pixel' is always included."""
    for name, x in (("generated", generated), ("train", train), ("heldout", heldout)):
        if x.ndim != 4 or x.shape[1:] != generated.shape[1:]:
            raise ValueError(
                f"{name} images: expected [N, C, H, W] like the generated {tuple(generated.shape[1:])},"
                f" got {tuple(x.shape)}"
            )
    spaces = dict(pixel=pixel_embedding, **embeddings)
    return {
        name: space_report(*(embed_all(fn, x, batch) for x in (generated, train, heldout)))
        for name, fn in spaces.items()
    }


# ---- data ------------------------------------------------------------------------------------------------------


def load_real(path: str, max_images: int | None, seed: int) -> torch.Tensor:
    """A dataset folder/zip as float images in [-1, 1] (a seeded subset when max_images is given)."""
    from training.dataset import ImageFolderDataset

    try:
        dataset = ImageFolderDataset(path, max_size=max_images, random_seed=seed)
    except OSError as exc:  # bad dataset contents raise DatasetError, a UserError naming the file
        raise dnnlib.UserError(f"{path}: cannot read the dataset ({exc})") from None
    images = np.stack([dataset[i][0] for i in range(len(dataset))])
    return torch.from_numpy(images).float() / 127.5 - 1


def equal_sizes(train: torch.Tensor, heldout: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Both real sets cut to the smaller one's size (a seeded subset of the larger): the nearest image in a larger
    set is closer by chance alone, so the share of generated images closer to training is 0.5 at chance only when
    the two sets are the same size."""
    size = min(len(train), len(heldout))
    generator = torch.Generator().manual_seed(seed)
    train, heldout = (
        x if len(x) == size else x[torch.randperm(len(x), generator=generator)[:size]] for x in (train, heldout)
    )
    return train, heldout


def check_disjoint(train: torch.Tensor, heldout: torch.Tensor, train_path: str, heldout_path: str) -> None:
    """Refuse a held-out set made of training images (every attack would read chance, AUC 0.5, by construction,
    which looks like privacy); warn when only some of its images are training images."""
    members = {image.numpy().tobytes() for image in train}
    shared = sum(image.numpy().tobytes() in members for image in heldout)
    if shared == len(heldout):
        raise dnnlib.UserError(
            f"--heldout={heldout_path}: all {len(heldout)} of its images are also in "
            f"--train={train_path}; held-out images must be ones the generator never trained on "
            f"(e.g. the test split)"
        )
    if shared:
        click.echo(
            f"Warning: --heldout={heldout_path}: {shared} of its {len(heldout)} images are also in --train; "
            f"they count as non-members although the generator trained on them",
            err=True,
        )


def check_real_shapes(G: torch.nn.Module, real_sets: dict[str, torch.Tensor]) -> None:
    """Real images must have the generator's channels and resolution, to be compared pixel by pixel."""
    expected = (G.img_channels, G.img_resolution, G.img_resolution)
    for where, images in real_sets.items():
        if tuple(images.shape[1:]) != expected:
            raise dnnlib.UserError(
                f"{where}: images of shape {list(images.shape[1:])} (CHW); the generator makes {list(expected)}"
            )


@torch.no_grad()
def generate(G: torch.nn.Module, num: int, seed: int, batch: int, device: torch.device) -> torch.Tensor:
    """`num` images (noise_mode const) with labels drawn uniformly over classes (a public prior)."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for start in tqdm.trange(0, num, batch, desc="generating"):
        n = min(batch, num - start)
        z = torch.randn([n, G.z_dim], generator=generator)
        c = torch.zeros([n, G.c_dim])
        if G.c_dim > 0:
            c[torch.arange(n), torch.randint(G.c_dim, [n], generator=generator)] = 1
        img = G(z.to(device), c.to(device), noise_mode="const").cpu()
        out.append(img.clamp(-1, 1))
    return torch.cat(out)


# ---- outputs ---------------------------------------------------------------------------------------------------


def dp_tpr_bound(epsilon: float, delta: float, fpr: float) -> float:
    """The highest true-positive rate any membership test can reach at false-positive rate `fpr` against an
    (epsilon, delta)-DP mechanism: DP's hypothesis-testing region, TPR <= e^eps FPR + delta and
    1 - TPR >= e^-eps (1 - delta - FPR) (Kairouz, Oh and Viswanath 2015). Post-processing keeps it."""
    if epsilon > 700:  # e^eps overflows a float; the first bound is then above 1 anyway
        return 1.0
    return float(min(1.0, math.exp(epsilon) * fpr + delta, 1 - math.exp(-epsilon) * (1 - delta - fpr)))


def stated_tpr_bound(statement: dict[str, Any] | None) -> float | None:
    """The TPR bound at AUDIT_FPR of a privacy_statement's DP account; None when the generator is not DP."""
    account = (statement or {}).get("account") or {}
    if not account.get("differentially_private") or account.get("epsilon") is None:
        return None
    return dp_tpr_bound(account["epsilon"], account["delta"], AUDIT_FPR)


def privacy_statement(metadata: dict | None) -> dict[str, Any]:
    metadata = metadata or {}
    privacy = metadata.get("privacy")
    if not privacy:
        return dict(guarantee="none recorded: the snapshot was not trained with --dp=1", not_covered=NOT_COVERED)
    if not privacy.get("differentially_private", False):
        return dict(
            guarantee=f"NOT differentially private ({privacy.get('note', '')})",
            account=privacy,
            not_covered=NOT_COVERED,
        )
    not_covered = privacy.get("outside_account") or (
        ([JUDGE_OUTSIDE_ACCOUNT] if metadata.get("clinical_loss") else []) + NOT_COVERED
    )
    statement = dict(
        guarantee=f"({privacy['epsilon']:.4g}, {privacy['delta']:.3g})-DP per {privacy['unit']} "
        f"for {_accounted(privacy)}; the generator is post-processing",
        account=privacy,
        not_covered=not_covered,
    )
    return dict(statement, mia_tpr_bound=stated_tpr_bound(statement))


def _accounted(privacy: dict) -> str:
    """What the epsilon covers: D's training, composed with the judge's where the account holds it; the judge's alone
    where D spent nothing (train.py --dp-data-public=1: G and D train on declared-public images)."""
    parts = privacy.get("epsilon_parts") or {}
    if len(parts) <= 1:
        return "the discriminator's training"
    spent = ", ".join(f"{name} {value:.4g} alone" for name, value in parts.items())
    if parts.get("discriminator") == 0:
        return (
            f"the DP-trained clinical judge's training ({spent}), the only mechanism that read the private images "
            "(G and D trained on declared-public images)"
        )
    return f"the discriminator's training composed with the DP-trained clinical judge's ({spent})"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Privacy audit",
        "",
        f"Network: `{report['network']}`",
        "",
        f"Generated {report['num_generated']}, training {report['num_train']}, held-out "
        f"{report['num_heldout']} images.",
        "",
        "## Stated guarantee",
        "",
        report["privacy"]["guarantee"],
        "",
    ]
    if "mia_tpr_bound" in report["privacy"]:
        lines += [
            f"Under it, no membership attack on one {report['privacy']['account']['unit']} reaches a TPR above "
            f"{report['privacy']['mia_tpr_bound']:.4f} at {AUDIT_FPR:.0%} FPR (DP's hypothesis-testing "
            f"bound; the measured attack is below).",
            "",
        ]
    lines += ["Not covered:", ""]
    lines += [f"- {item}" for item in report["privacy"]["not_covered"]]
    lines += [
        "",
        "## Memorisation and membership inference",
        "",
        "| space | share closer to train | median dist gen->train | median dist gen->held-out | MIA AUC | "
        "TPR @ 1% FPR |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in report["spaces"].items():
        lines.append(
            f"| {name} | {r['share_closer_to_train']:.3f} | {r['generated_to_train']['median']:.4g} | "
            f"{r['generated_to_heldout']['median']:.4g} | {r['mia_auc']:.3f} | "
            f"{r['mia_tpr_at_1pct_fpr']:.3f} |"
        )
    inversion = report.get("inversion")
    if inversion:
        lines.append(
            f"| inversion ({inversion['num_per_set']} per set, {inversion['steps']} steps) | - | "
            f"member {inversion['member_distance_median']:.4g} | non-member "
            f"{inversion['nonmember_distance_median']:.4g} | {inversion['mia_auc']:.3f} | "
            f"{inversion['mia_tpr_at_1pct_fpr']:.3f} |"
        )
    if inversion:
        lines += [
            "",
            f"Inversion row: median reconstruction distance of members and non-members ("
            f"{inversion['distance']}); the attack scores a real image by minus that distance. It took "
            f"{inversion['seconds']} s.",
        ]
    lines += [
        "",
        "Chance: share 0.5 (real sets of equal size from one distribution), AUC 0.5, TPR 0.01.",
        "Closest generated/training pairs (pixel space): `closest_pairs.png` (top: generated, bottom: "
        "nearest training image).",
        "",
    ]
    return "\n".join(lines)


def save_closest_pairs(
    generated: torch.Tensor, train: torch.Tensor, pixel: dict[str, Any], path: str, num_pairs: int
) -> None:
    """Top row: the generated images nearest to a training image; bottom row: those training images."""
    chosen = pixel["_closest"][:num_pairs]
    images = torch.cat([generated[chosen], train[pixel["_nn_train"][chosen]]]).numpy()
    save_image_grid(images, path, drange=(-1, 1), grid_size=(len(chosen), 2))


def write_outputs(
    outdir: str, report: dict[str, Any], generated: torch.Tensor, train: torch.Tensor, num_pairs: int
) -> None:
    os.makedirs(outdir, exist_ok=True)
    dnnlib.remove_stale_temp_files(outdir)  # of an earlier audit killed mid-write
    save_closest_pairs(
        generated, train, report["spaces"]["pixel"], os.path.join(outdir, "closest_pairs.png"), num_pairs
    )
    public = dict(
        report,
        spaces={name: {k: v for k, v in r.items() if not k.startswith("_")} for name, r in report["spaces"].items()},
    )
    with dnnlib.atomic_write(os.path.join(outdir, "privacy_audit.json"), "w") as f:
        json.dump(public, f, indent=2)
    with dnnlib.atomic_write(os.path.join(outdir, "privacy_audit.md"), "w") as f:
        f.write(markdown(public))


@click.command()
@click.option("--network", "network_pkl", help="Network snapshot (.pkl) or URL", required=True)
@click.option("--train", "train_path", help="Training images (folder or zip): the members", required=True)
@click.option("--heldout", "heldout_path", help="Held-out images never used for training", required=True)
@click.option("--outdir", help="Where to write the report", required=True, type=dnnlib.OutputPath())
@click.option("--num", help="Generated images [default: 1000]", type=click.IntRange(min=1), default=1000)
@click.option(
    "--max-real",
    help="At most this many images per real set [default: all; the larger set is always cut to the smaller one's size]",
    type=click.IntRange(min=1),
)
@click.option("--classifier", help="classifier.pkl whose features form the feature space", type=str)
@click.option("--seed", help="Seed of the latents and the random embedding [default: 0]", type=dnnlib.SEED, default=0)
@click.option("--batch", help="Batch size [default: 32]", type=click.IntRange(min=1), default=32)
@click.option("--pairs", help="Closest pairs to show [default: 8]", type=click.IntRange(min=1), default=8)
@click.option(
    "--inversion",
    help="Members and non-members each to invert (the white-box attack); 0 = off [default: 0]",
    type=click.IntRange(min=0),
    default=0,
)
@click.option(
    "--inversion-steps",
    help="Projection steps of the inversion attack [default: 100]",
    type=click.IntRange(min=1),
    default=100,
)
def main(
    network_pkl: str,
    train_path: str,
    heldout_path: str,
    outdir: str,
    num: int,
    max_real: int | None,
    classifier: str | None,
    seed: int,
    batch: int,
    pairs: int,
    inversion: int,
    inversion_steps: int,
) -> None:
    """Nearest-neighbour memorisation and membership inference of a generator against its training data."""
    from training.serialization import load_network_pkl

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    snapshot = load_network_pkl(network_pkl)
    if snapshot["G_ema"] is None:
        raise dnnlib.UserError(f"--network={network_pkl}: the snapshot holds no G_ema (the generator to audit)")
    G = snapshot["G_ema"].eval().requires_grad_(False).to(device)
    train, heldout = load_real(train_path, max_real, seed), load_real(heldout_path, max_real, seed)
    check_disjoint(train, heldout, train_path, heldout_path)
    train, heldout = equal_sizes(train, heldout, seed)
    check_real_shapes(G, {f"--train={train_path}": train, f"--heldout={heldout_path}": heldout})
    embeddings = (
        {"classifier": classifier_embedding(classifier, device)}
        if classifier
        else {"random_conv": random_conv_embedding(G.img_channels, seed)}
    )
    generated = generate(G, num, seed, batch, device)
    spaces = audit(generated, train, heldout, embeddings, batch)
    report = dict(
        network=network_pkl,
        num_generated=num,
        num_train=len(train),
        num_heldout=len(heldout),
        seed=seed,
        privacy=privacy_statement(snapshot.get("metadata")),
        spaces=spaces,
    )
    if inversion:
        print(f"Inverting {inversion} members and {inversion} non-members ({inversion_steps} steps)...")
        report["inversion"] = inversion_attack(G, train, heldout, inversion, inversion_steps, seed, device)
    write_outputs(outdir, report, generated, train, pairs)
    print(markdown(dict(report, spaces=spaces)))


if __name__ == "__main__":
    main()

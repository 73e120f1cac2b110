"""A canary audit: an empirical lower bound on epsilon, to set beside the accountant's.

    python -m spine.dp.canary insert --data=train.zip --dest=train-canaries --canaries=canaries --count=16
    python train.py --data=train-canaries ... --dp=1 ...
    python -m spine.dp.canary audit --network=network-snapshot-....pkl --canaries=canaries --out=audit.json

`insert` makes 2k canaries, each a training image (seeded choice) stamped with its own visible random pattern (a
black-and-white checkerboard of seeded cells over the central quarter of the image), and writes a copy of the
dataset with a seeded half of them added (the members, each its own study, so its own privacy unit for
--dp-unit=study too); the other half stays out. `audit` scores every canary with the trained discriminator (its
logit D(x, c): D is the DP-trained network, so the guarantee bounds exactly this attack) and turns the best
threshold's true- and false-positive rates into a lower bound on epsilon.

A classifier trained on the private images (the clinical loss's DP judge, `python -m spine.dp.judge`) is audited
the same way with `audit --classifier=judge.pkl`: the attack's score is the judge's log-probability of the canary's
label. Its canaries are inserted with `--flip-labels=1`, each carrying a class other than its base image's: a
classifier that memorises an image must memorise the stamp to fit the wrong label, which is what makes members stand
out (the mislabelled canaries of Nasr et al., "Adversary instantiation", IEEE S&P 2021); a correctly labelled canary
is fitted by what the classifier learns from every other image, member or not. In the DP public-data recipe
(train.py --dp-data-public=1) the judge is the only mechanism that reads the private images, so its audit is the
audit of the whole run (G and D only post-process it).

The bound. An (epsilon, delta)-DP training makes any membership test satisfy TPR <= e^epsilon FPR + delta, and
symmetrically TNR <= e^epsilon FNR + delta (Kairouz, Oh & Viswanath 2015, the hypothesis-testing view of DP), so

    epsilon >= max(log((TPR - delta) / FPR), log((TNR - delta) / FNR)).

The rates are estimated from few canaries, so we take one-sided Clopper-Pearson bounds, TPR from below and FPR from
above (then TNR >= 1 - FPR_upper and FNR <= 1 - TPR_lower), at a confidence 1 - alpha split (Bonferroni) over the
two bounds and every threshold tried: the reported bound holds with probability at least 1 - alpha whichever
threshold looks best (as in Jagielski, Ullman & Oprea, "Auditing differentially private machine learning",
NeurIPS 2020). The test's direction is fixed in advance: a higher D score means 'member'. The bound must not
exceed the accountant's epsilon; with k member canaries it can never exceed about log(k) either (perfect
separation gives FPR_upper of about log(2m / alpha) / k), so a small audit can only catch a gross error.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import click
import numpy as np
import PIL.Image
import torch

import dnnlib
from spine.data.dataset_tool import check_dest, open_dest
from training.dataset import ImageFolderDataset

CANARY_FILE = "canaries.json"
PATTERN_CELLS = 4  # the stamp: PATTERN_CELLS x PATTERN_CELLS black or white cells over the central quarter


# ---- the bound -------------------------------------------------------------------------------------------------


def clopper_pearson(successes: int, trials: int, alpha: float) -> tuple[float, float]:
    """One-sided Clopper-Pearson bounds of a binomial rate: (lower, upper), each holding with probability 1 - alpha.

    lower = Beta(alpha; k, n - k + 1) quantile (0 for k = 0), upper = Beta(1 - alpha; k + 1, n - k) quantile
    (1 for k = n)."""
    from scipy.stats import beta

    if not 0 <= successes <= trials or trials < 1:
        raise ValueError(f"clopper_pearson: expected 0 <= successes <= trials, trials >= 1, got {successes}/{trials}")
    lower = 0.0 if successes == 0 else float(beta.ppf(alpha, successes, trials - successes + 1))
    upper = 1.0 if successes == trials else float(beta.ppf(1 - alpha, successes + 1, trials - successes))
    return lower, upper


def epsilon_from_rates(tpr: float, fpr: float, delta: float) -> float:
    """The smallest epsilon an (epsilon, delta)-DP training allows for a test with these rates, from
    TPR <= e^eps FPR + delta and TNR <= e^eps FNR + delta; 0 when neither constrains."""
    bounds = [0.0]
    for hit, miss in ((tpr, fpr), (1 - fpr, 1 - tpr)):
        if hit - delta > 0:
            bounds.append(math.inf if miss <= 0 else math.log((hit - delta) / miss))
    return max(bounds)


@dataclasses.dataclass(frozen=True)
class EmpiricalEpsilon:
    """The audit's result at its best threshold: counts, point rates, confidence bounds and the epsilon bound."""

    epsilon_lower_bound: float
    threshold: float
    true_positives: int
    num_members: int
    false_positives: int
    num_nonmembers: int
    tpr_lower: float
    fpr_upper: float
    confidence: float
    thresholds_tried: int


def empirical_epsilon(
    member_scores: Sequence[float], nonmember_scores: Sequence[float], delta: float, alpha: float = 0.05
) -> EmpiricalEpsilon:
    """Lower bound on epsilon with confidence 1 - alpha from an attack's scores (higher = 'member'), over every
    threshold 'score >= t' (module docstring)."""
    members, others = np.asarray(member_scores, np.float64), np.asarray(nonmember_scores, np.float64)
    if len(members) == 0 or len(others) == 0:
        raise ValueError("empirical_epsilon: needs at least one member and one non-member score")
    thresholds = np.unique(np.concatenate([members, others]))
    per_bound = alpha / (2 * len(thresholds))  # Bonferroni over two rates and every threshold
    results = []
    for t in thresholds:
        tp, fp = int((members >= t).sum()), int((others >= t).sum())
        tpr_lo, _ = clopper_pearson(tp, len(members), per_bound)
        _, fpr_hi = clopper_pearson(fp, len(others), per_bound)
        bound = epsilon_from_rates(tpr_lo, fpr_hi, delta)
        results.append(
            EmpiricalEpsilon(
                bound, float(t), tp, len(members), fp, len(others), tpr_lo, fpr_hi, 1 - alpha, len(thresholds)
            )
        )
    return max(results, key=lambda r: r.epsilon_lower_bound)


# ---- the canaries ----------------------------------------------------------------------------------------------


def stamp(image: np.ndarray, seed: int) -> np.ndarray:
    """`image` (uint8 CHW) with the canary's own pattern: seeded black/white cells over the central quarter."""
    _, h, w = image.shape
    cells = np.random.RandomState(seed).randint(0, 2, [PATTERN_CELLS, PATTERN_CELLS]).astype(np.uint8) * 255
    ph, pw = max(h // 2, PATTERN_CELLS), max(w // 2, PATTERN_CELLS)
    patch = np.kron(cells, np.ones([-(-ph // PATTERN_CELLS), -(-pw // PATTERN_CELLS)], np.uint8))[:ph, :pw]
    out = image.copy()
    top, left = (h - ph) // 2, (w - pw) // 2
    out[:, top : top + ph, left : left + pw] = patch
    return out


@dataclasses.dataclass(frozen=True)
class Canary:
    file: str  # PNG in the canaries folder
    base_file: str  # the training image it was stamped on
    label: Any  # its label as in dataset.json: the base image's, or another class with --flip-labels
    member: bool  # inserted into the training copy
    base_label: Any = None  # the base image's label where `label` was flipped


def raw_label(dataset: ImageFolderDataset, index: int) -> Any:
    """The image's label as dataset.json writes it: a class index, a float list, or None (unlabelled)."""
    if not dataset.has_labels:
        return None
    label = dataset.get_label(index)
    return int(np.argmax(label)) if dataset.has_onehot_labels else [float(v) for v in label]


def choose_canaries(dataset: ImageFolderDataset, count: int, seed: int, flip_labels: bool = False) -> list[Canary]:
    """2 * count canaries on distinct seeded base images; a seeded half are members. With `flip_labels` each carries
    a seeded class other than its base image's."""
    if not 1 <= count <= len(dataset) // 2:
        raise dnnlib.UserError(f"--count={count}: expected 1 <= count <= half the dataset ({len(dataset) // 2})")
    rng = np.random.RandomState(seed)
    bases = rng.choice(len(dataset), size=2 * count, replace=False)
    member = np.zeros(2 * count, dtype=bool)
    member[rng.choice(2 * count, size=count, replace=False)] = True
    canaries = []
    for k, i in enumerate(bases):
        label = raw_label(dataset, int(i))
        carried = (label + 1 + rng.randint(dataset.label_dim - 1)) % dataset.label_dim if flip_labels else label
        file = dataset.image_info(int(i))["file"]
        base = label if flip_labels else None
        canaries.append(Canary(f"canary{k:04d}.png", file, carried, bool(member[k]), base_label=base))
    return canaries


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def insert(data: str, dest: str, canaries_dir: str, count: int, seed: int, flip_labels: bool = False) -> list[Canary]:
    """Write `dest` (the dataset plus the member canaries, each its own study) and `canaries_dir` (every canary's
    PNG and canaries.json), both atomically."""
    check_dest(dest, flag="--dest")
    check_dest(canaries_dir, flag="--canaries")
    try:
        dataset = ImageFolderDataset(data, use_labels=True)
    except dnnlib.UserError:
        dataset = ImageFolderDataset(data)  # unlabelled
    if flip_labels and not (dataset.has_onehot_labels and dataset.label_dim >= 2):
        raise dnnlib.UserError(f"--flip-labels=1: --data={data} has no class labels (at least 2 classes) to flip")
    canaries = choose_canaries(dataset, count, seed, flip_labels)
    index_of = {dataset.image_info(i)["file"]: i for i in range(len(dataset))}
    stamped = {c.file: stamp(dataset[index_of[c.base_file]][0], seed * 100_003 + k) for k, c in enumerate(canaries)}
    block = json.loads(json.dumps(dataset.metadata))
    files = [dataset.image_info(i)["file"] for i in range(len(dataset))]
    labels = [[f, raw_label(dataset, i)] for i, f in enumerate(files)]
    with open_dest(dest) as add:
        for i, fname in enumerate(files):
            add(fname, _png(dataset[i][0]))
        for c in (c for c in canaries if c.member):
            add(f"canary/{c.file}", _png(stamped[c.file]))
            labels.append([f"canary/{c.file}", c.label])
            block.setdefault("images", []).append(dict(file=f"canary/{c.file}", image_id=c.file, study_id=c.file))
        block["num_images"] = len(dataset) + count
        block["canaries"] = dict(
            count=count, seed=seed, flip_labels=flip_labels, note="member canaries added by spine.dp.canary insert"
        )
        meta = dict(labels=labels if dataset.has_labels else None, spinegan=block)
        add("dataset.json", json.dumps(meta, indent=1).encode("utf-8"))
    record = dict(data=os.path.abspath(data), dest=os.path.abspath(dest), count=count, seed=seed)
    record["flip_labels"] = flip_labels
    record["canaries"] = [dataclasses.asdict(c) for c in canaries]
    with open_dest(canaries_dir) as add:
        for c in canaries:
            add(c.file, _png(stamped[c.file]))
        add(CANARY_FILE, json.dumps(record, indent=1).encode("utf-8"))
    return canaries


# ---- the attack ------------------------------------------------------------------------------------------------


def onehot_label(label: Any, c_dim: int) -> np.ndarray:
    """A dataset.json label as D's conditioning vector (int: one-hot; list: as is; none: empty)."""
    if c_dim == 0:
        return np.zeros([0], np.float32)
    if isinstance(label, int):
        return np.eye(c_dim, dtype=np.float32)[label]
    return np.asarray(label, np.float32)


@torch.no_grad()
def discriminator_scores(D: torch.nn.Module, images: np.ndarray, labels: np.ndarray, batch: int = 64) -> np.ndarray:
    """D's logit for each uint8 NCHW image with its label (higher: more like the training data)."""
    scores = []
    for start in range(0, len(images), batch):
        x = torch.from_numpy(images[start : start + batch]).to(torch.float32) / 127.5 - 1
        scores.append(D(x, torch.from_numpy(labels[start : start + batch])).flatten().numpy())
    return np.concatenate(scores).astype(np.float64)


@torch.no_grad()
def classifier_scores(judge: torch.nn.Module, images: np.ndarray, labels: Sequence[int], batch: int = 64) -> np.ndarray:
    """A spine classifier's log-probability of each uint8 NCHW image's class label (higher: fits its label better)."""
    scores = []
    for start in range(0, len(images), batch):
        logits = judge(judge.preprocess_uint8(torch.from_numpy(images[start : start + batch])))
        y = torch.as_tensor(labels[start : start + batch], dtype=torch.long)
        if logits.shape[1] == 1:  # one abnormal logit: log sigmoid of the logit signed towards the label
            scores.append(torch.nn.functional.logsigmoid(torch.where(y == 1, logits[:, 0], -logits[:, 0])))
        else:
            scores.append(torch.log_softmax(logits, dim=1).gather(1, y[:, None])[:, 0])
    return torch.cat(scores).numpy().astype(np.float64)


@dataclasses.dataclass(frozen=True)
class Target:
    """What the audit attacks: a description, a scorer (uint8 NCHW images, dataset.json labels -> scores, higher
    means 'member') and the target's privacy account ({'differentially_private', 'epsilon', 'delta'}; {} if none)."""

    attack: str
    score: Callable[[np.ndarray, list[Any]], np.ndarray]
    privacy: dict


def discriminator_target(network_pkl: str) -> Target:
    """The snapshot's discriminator (eval, CPU) and the run's privacy account (metadata['privacy'])."""
    from training.serialization import load_network_pkl

    with dnnlib.open_url(network_pkl) as f:
        snapshot = load_network_pkl(f)
    if snapshot.get("D") is None:
        raise dnnlib.UserError(f"--network={network_pkl}: the snapshot holds no discriminator to attack with")
    D = snapshot["D"].eval().requires_grad_(False).cpu()
    return Target(
        "D's logit on each canary with its label, members = score >= threshold",
        lambda images, labels: discriminator_scores(D, images, np.stack([onehot_label(c, D.c_dim) for c in labels])),
        (snapshot.get("metadata") or {}).get("privacy") or {},
    )


def classifier_target(classifier_pkl: str) -> Target:
    """A classifier.pkl (a DP judge's account is its provenance's 'privacy'; an ordinary classifier has none)."""
    from spine.classifier.artifact import load_classifier

    judge = load_classifier(classifier_pkl)
    privacy = judge.provenance.get("privacy")
    return Target(
        "the classifier's log-probability of each canary's label, members = score >= threshold",
        lambda images, labels: classifier_scores(judge, images, labels),
        {} if privacy is None else dict(privacy, differentially_private=True),
    )


def audit(target: Target, canaries_dir: str, alpha: float) -> dict[str, Any]:
    """The target's scores of the canaries, the empirical bound, and the account the target states."""
    try:
        with open(os.path.join(canaries_dir, CANARY_FILE)) as f:
            record = json.load(f)
    except OSError as exc:
        raise dnnlib.UserError(
            f"--canaries={canaries_dir}: no {CANARY_FILE} ({exc.strerror}); run 'insert' first"
        ) from None
    entries = record["canaries"]
    images = []
    for c in entries:
        with PIL.Image.open(os.path.join(canaries_dir, c["file"])) as im:
            pixels = np.asarray(im)
        images.append(pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1))
    scores = target.score(np.stack(images), [c["label"] for c in entries])
    member = np.array([c["member"] for c in entries])
    privacy = target.privacy
    delta = float(privacy.get("delta", 1e-5))
    result = empirical_epsilon(scores[member], scores[~member], delta, alpha)
    stated = privacy.get("epsilon") if privacy.get("differentially_private") else None
    return dict(
        canaries=os.path.abspath(canaries_dir),
        flip_labels=bool(record.get("flip_labels", False)),
        attack=target.attack,
        delta=delta,
        empirical=dataclasses.asdict(result),
        accountant_epsilon=stated,
        within_account=None if stated is None else bool(result.epsilon_lower_bound <= stated),
        scores=dict(members=scores[member].tolist(), nonmembers=scores[~member].tolist()),
    )


@click.group()
def cli() -> None:
    """Canary audit of a DP run: insert marked images, then bound epsilon from below."""


@cli.command("insert")
@click.option("--data", required=True, type=click.Path(exists=True), help="The private training dataset")
@click.option("--dest", required=True, type=dnnlib.OutputPath(), help="New dataset: --data plus the member canaries")
@click.option("--canaries", "canaries_dir", required=True, type=dnnlib.OutputPath(), help="Folder for every canary")
@click.option("--count", type=click.IntRange(min=1), default=16, show_default=True, help="Members (as many stay out)")
@click.option("--seed", type=dnnlib.SEED, default=0, show_default=True)
@click.option(
    "--flip-labels",
    type=bool,
    default=False,
    show_default=True,
    help="Give each canary another class than its base image's (to audit a classifier)",
)
def insert_command(data: str, dest: str, canaries_dir: str, count: int, seed: int, flip_labels: bool) -> None:
    """Write a copy of --data with `count` stamped canaries inserted, and all 2 x count canaries apart."""
    insert(data, dest, canaries_dir, count, seed, flip_labels)
    click.echo(
        f"{count} canaries inserted{' (labels flipped)' if flip_labels else ''} -> {dest}; "
        f"all {2 * count} in {canaries_dir}"
    )


@cli.command("audit")
@click.option("--network", "network_pkl", type=click.Path(exists=True, dir_okay=False), help="A snapshot: attack its D")
@click.option(
    "--classifier",
    "classifier_pkl",
    type=click.Path(exists=True, dir_okay=False),
    help="A classifier.pkl (e.g. a DP judge): attack it",
)
@click.option("--canaries", "canaries_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=dnnlib.OutputPath(dir_okay=False), help="Audit JSON")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05, show_default=True)
def audit_command(
    network_pkl: str | None, classifier_pkl: str | None, canaries_dir: str, out: str, alpha: float
) -> None:
    """Bound epsilon from below with the target's scores of the canaries; report it beside its accountant's epsilon."""
    if (network_pkl is None) == (classifier_pkl is None):
        raise dnnlib.UserError("give one target: --network=<snapshot.pkl> or --classifier=<classifier.pkl>")
    if network_pkl is not None:
        target, key = discriminator_target(network_pkl), dict(network=os.path.abspath(network_pkl))
    else:
        target, key = classifier_target(classifier_pkl), dict(classifier=os.path.abspath(classifier_pkl))
    report = dict(key, **audit(target, canaries_dir, alpha))
    with dnnlib.atomic_write(out, "w") as f:
        json.dump(report, f, indent=1)
    empirical = report["empirical"]
    stated = report["accountant_epsilon"]
    click.echo(
        f"empirical epsilon >= {empirical['epsilon_lower_bound']:.4f} ({empirical['confidence']:.0%} confidence, "
        f"{empirical['num_members']} members / {empirical['num_nonmembers']} out); accountant: "
        + ("not DP" if stated is None else f"{stated:.4f}")
        + f" -> {out}"
    )
    if report["within_account"] is False:
        click.echo(
            "Warning: the empirical lower bound exceeds the accountant's epsilon: the account is wrong", err=True
        )


if __name__ == "__main__":
    cli()

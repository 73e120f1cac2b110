"""DP as a training plug-in (`PLUGIN`, a `training.plugin_options.TrainingPlugin`): the --dp* options, validated
and turned into training-loop settings (`configure`, which sets args.dp) and plug-ins (`build`).

--dp-mode=dpsgd (default): DP-SGD on D (`spine.dp.update`). Noise: --dp-noise-multiplier, or --dp-epsilon (with
--dp-delta), calibrated so that the planned run (--kimg) ends at that epsilon; --dp-epsilon is also the budget at
which training stops. q = batch / number of images; one accountant step per iteration (phase Dboth, R1 lazily
inside the per-sample loss every 16 steps). Resuming a checkpoint keeps its sigma, whatever --kimg now says.
--dp-d-steps=n: G steps on every n-th iteration only, so D takes n private steps per G step (Bie, Kamath & Zhang,
"Private GANs, revisited", TMLR 2023). Every iteration's D step reads a fresh Poisson draw and is one accountant
step, so --kimg still counts the real images D reads (the account's steps = kimg * 1000 / batch) and G takes 1/n
of them; G_ema is updated every iteration, so its half-life (--ema kimg) also counts D's images.
--dp-private-batch=N: the expected number of private images per D step (q = N / number of images; default
--batch), apart from G's batch: the noise per coordinate of the averaged private gradient, sigma C / N, falls as N
grows at the same epsilon (epsilon 10, 3,750 steps: sigma 0.54 at N = 16, 1.31 at N = 128, 3.3x less noise per
coordinate); G and the fake term keep --batch, and --kimg counts G's images (the account's steps stay
kimg * 1000 / batch).
--dp-physical-batch=m: per-sample gradients are held for at most m real images at a time (a virtual step:
micro-batches' clipped sums added, noise once per logical step), so a large --batch keeps memory bounded.
With --clinical-loss, the judge enters the account: a judge trained with DP-SGD (`spine.dp.judge`, its account in
classifier.pkl) is composed with D's steps into one epsilon (and --dp-epsilon calibrates D's noise for the rest of
the budget); --dp-judge-public=1 declares a judge trained on public data (no cost); any other judge is named outside
the account in every report. A transfer-learning start (--resume=<snapshot.pkl>) is named outside the account
unless --dp-pretrain-public=1 declares it trained on public images (DP fine-tuning from a public pretraining, as
DPImageBench compares); a continued run keeps its start's entry.
--dp-public-reals=PATH: images declared public (e.g. normal radiographs of an open set) whose real term D adds,
without clipping or noise, to every private step (`spine.dp.public_reals`), at --dp-public-weight (default 1);
they cost nothing and are listed as declared public. A conditional D needs them labelled like --data.
--dp-private-params=epilogue|head|input1-head|input2-head (with --dp-public-reals): the private term trains only part
of D (the 4x4 epilogue and the label embedding; its output layer and the label embedding; that head plus D's first one
or two blocks from the input, where local findings are seen); the rest of D learns from the fakes and the public
images, and the noise covers fewer coordinates (`spine.dp.update`). --dp-private-weight=w
(with --dp-public-reals): the private term, its noise included, enters D's gradient times w, so that its noise does
not set D's Adam step size (post-processing: the account is unchanged).
--dp-private-critic=CHANNELS (with --dp-public-reals, e.g. 8,16,16): the private term trains a small separate critic
(`spine.dp.private_critic`) instead of D, by the same mechanism and account; D reads only the fakes and the public
images and judges only renders of the first class (normal: the class the public images show), and G's loss adds the
critic's term times --dp-critic-weight (default 1).
--dp-data-public=1: --data is declared public (e.g. normal radiographs from an open set): G and D train on it as
without DP (minibatch-std, R1 and ADA as usual), and the private images reach the generator only through the
clinical loss's judge, trained with DP-SGD (or declared public), whose epsilon is then the run's whole account;
fake labels come from the public prior, since public images need not show every class.
--dp-mode=paper: the authors' noise-then-clip scheme on G and D (`spine.dp.paper_mode`), microbatch 1: NOT DP.
--dp-clip=0 / --dp-noise=0 turn clipping / noise off in either mode, for ablations; such runs are labelled NOT-DP.
"""

from __future__ import annotations

import math
from typing import Any

import click
import torch

from dnnlib.cli import OptionGroup
from spine.dp import accounting, guards, ledger, paper_mode, private_critic
from spine.dp.mechanism import MechanismConfig
from spine.dp.sampling import UNITS
from spine.dp.update import PRIVATE_SCOPES
from training import checkpoint as ckpt
from training import resume_options
from training.loop_plugins import LoopPlugins
from training.phase_update import EveryNthStep, GradientStep
from training.plugin_options import DeclaredPlugin

MODES = ("dpsgd", "paper")
R1_INTERVAL = 16  # lazy R1 inside the per-sample loss, as often as the official Dreg phase
DEFAULT_DELTA = 1e-5
DEFAULT_MAX_GRAD_NORM = 1.0
DEFAULT_ACCOUNTANT = "rdp"
DEFAULT_UNIT = "image"
SETTING = "dp"  # args.dp: this plug-in's settings, recorded with the run (not a training_loop argument)

OPTIONS = OptionGroup(
    click.option(
        "--dp", help="Differentially private training of D [default: false]", type=bool, default=False, metavar="BOOL"
    ),
    click.option(
        "--dp-mode",
        help="dpsgd (per-sample clipping on D) or paper (authors' scheme, NOT DP)",
        type=click.Choice(MODES),
    ),
    click.option("--dp-noise-multiplier", help="Noise std / max grad norm", type=float, metavar="FLOAT"),
    click.option(
        "--dp-epsilon",
        help="Target epsilon: calibrates the noise for --kimg and stops there",
        type=float,
        metavar="FLOAT",
    ),
    click.option("--dp-delta", help=f"Target delta [default: {DEFAULT_DELTA:g}]", type=float, metavar="FLOAT"),
    click.option(
        "--dp-max-grad-norm",
        help=f"Per-sample clipping bound C [default: {DEFAULT_MAX_GRAD_NORM:g}; "
        f"paper: {paper_mode.PAPER_MAX_GRAD_NORM:g}]",
        type=float,
        metavar="FLOAT",
    ),
    click.option(
        "--dp-accountant",
        help=f"Privacy accountant [default: {DEFAULT_ACCOUNTANT}]",
        type=click.Choice(accounting.ACCOUNTANTS),
    ),
    click.option(
        "--dp-unit",
        help=f"Privacy unit: image, or study (needs study ids) [default: {DEFAULT_UNIT}]",
        type=click.Choice(UNITS),
    ),
    click.option("--dp-clip", help="Ablation: clipping on/off [default: on]", type=bool, metavar="BOOL"),
    click.option("--dp-noise", help="Ablation: noise on/off [default: on]", type=bool, metavar="BOOL"),
    click.option(
        "--dp-d-steps",
        help="Private D steps per G step, each one step of the account [default: 1]",
        type=click.IntRange(min=1),
        metavar="INT",
    ),
    click.option(
        "--dp-private-batch",
        help="Expected number of private images per D step (Poisson rate = N / images) [default: --batch]",
        type=click.IntRange(min=1),
        metavar="INT",
    ),
    click.option(
        "--dp-physical-batch",
        help="Most real images whose per-sample gradients are held at once [default: the round's]",
        type=click.IntRange(min=1),
        metavar="INT",
    ),
    click.option(
        "--dp-judge-public",
        help="Declare the --clinical-loss judge trained on public data (no privacy cost) [default: false]",
        type=bool,
        metavar="BOOL",
    ),
    click.option(
        "--dp-pretrain-public",
        help="Declare the --resume=<snapshot.pkl> start trained on public images (no privacy cost) [default: false]",
        type=bool,
        metavar="BOOL",
    ),
    click.option(
        "--dp-data-public",
        help="Declare --data public: D trains on it without DP; the DP judge is the only private access "
        "[default: false]",
        type=bool,
        metavar="BOOL",
    ),
    click.option(
        "--dp-public-reals",
        help="Declared-public real images D reads beside the private ones in every DP-SGD step, without noise",
        type=str,
        metavar="PATH",
    ),
    click.option(
        "--dp-public-weight",
        help="Weight of the public images' real term [default: 1]",
        type=click.FloatRange(min=0, min_open=True),
        metavar="FLOAT",
    ),
    click.option(
        "--dp-private-weight",
        help="Weight of the private term, its noise included (with --dp-public-reals) [default: 1]",
        type=click.FloatRange(min=0, min_open=True),
        metavar="FLOAT",
    ),
    click.option(
        "--dp-private-params",
        help="Which of D's parameters the private images train (with --dp-public-reals) [default: all]",
        type=click.Choice(list(PRIVATE_SCOPES)),
    ),
    click.option(
        "--dp-private-critic",
        help="Train a small critic with these conv widths on the private images instead of D (with "
        "--dp-public-reals), e.g. 8,16,16",
        type=str,
        metavar="CHANNELS",
    ),
    click.option(
        "--dp-critic-weight",
        help="Weight of the private critic's term in G's loss [default: 1]",
        type=click.FloatRange(min=0, min_open=True),
        metavar="FLOAT",
    ),
    click.option("--dp-label-prior", help="Fake-label prior: uniform or comma-separated probabilities", type=str),
    click.option(
        "--dp-secure-rng",
        help="Draw DP noise and Poisson sampling from os.urandom (not reproducible) [default: false]",
        type=bool,
        metavar="BOOL",
    ),
)


def configure(opts: Any, args: Any) -> list[str]:
    """Validate the --dp options and adjust `args` (D kwargs, phases, augmentation, batch split); sets args.dp.

    When resuming a checkpoint (args.resume_checkpoint) its sigma is kept. Returns run-name parts.
    Raises guards.DPConfigError (a ValueError) naming the offending option.
    """
    args.dp = None
    if not opts.dp:
        given = OPTIONS.given(opts, exclude=("dp",))
        if given:
            raise guards.DPConfigError(f"{given[0]} needs --dp=1")
        return []
    mode = opts.dp_mode or "dpsgd"
    if mode not in MODES:
        raise guards.DPConfigError(f"--dp-mode={mode!r}: expected one of {MODES}")
    clip = True if opts.dp_clip is None else bool(opts.dp_clip)
    noise = True if opts.dp_noise is None else bool(opts.dp_noise)
    for flag in ("dp_public_weight", "dp_private_weight", "dp_private_params", "dp_private_critic"):
        if opts.get(flag) not in (None, "all") and opts.dp_public_reals is None:
            raise guards.DPConfigError(f"{resume_options.flag(flag)} needs --dp-public-reals=<public images>")
    if mode == "paper":
        if opts.dp_public_reals is not None:
            raise guards.DPConfigError("--dp-public-reals belongs to --dp-mode=dpsgd (D's DP-SGD step)")
        return _configure_paper(opts, args, clip, noise)
    if opts.dp_data_public:
        return _configure_public_data(opts, args)
    saved_options = ckpt.checkpoint_options(args.resume_checkpoint) if args.get("resume_checkpoint") else None
    return _configure_dpsgd(opts, args, clip, noise, saved_options)


def _configure_paper(opts: Any, args: Any, clip: bool, noise: bool) -> list[str]:
    max_norm = opts.dp_max_grad_norm if opts.dp_max_grad_norm is not None else paper_mode.PAPER_MAX_GRAD_NORM
    multiplier = (
        opts.dp_noise_multiplier if opts.dp_noise_multiplier is not None else paper_mode.PAPER_NOISE_STD / max_norm
    )
    args.batch_gpu = 1  # the authors' microbatch
    args.dp = dict(
        mode="paper", noise_multiplier=float(multiplier), max_grad_norm=float(max_norm), clip=clip, noise=noise
    )
    return [f"paperdp-std{multiplier * max_norm:g}-clip{max_norm:g}" + _ablation_tag(clip, noise), "notdp"]


def _configure_dpsgd(opts: Any, args: Any, clip: bool, noise: bool, saved_options: dict | None) -> list[str]:
    guards.check_options(mirror=bool(opts.mirror), ada=opts.aug == "ada", num_processes=opts.gpus)
    if opts.aug is None:  # DP's default: no augmentation (ADA is refused, a fixed p must be asked for)
        args.update(ada_target=None, augment_p=0, augment_kwargs=None)
        args.setdefault("notes", []).append(
            "--dp=1: augmentation is off (ADA, the default --aug, reads D's scores on real images outside the "
            "privacy account); pass --aug=fixed --p=<p> to augment"
        )
    args.D_kwargs = guards.private_discriminator_kwargs(args.D_kwargs)
    args.D_reg_interval = None

    num_images = int(args.training_set_kwargs.max_size)
    sample_rate = _private_batch(opts, args) / num_images
    delta = DEFAULT_DELTA if opts.dp_delta is None else float(opts.dp_delta)
    if not 0 < delta < 1 / num_images:
        raise guards.DPConfigError(
            f"--dp-delta={delta}: expected 0 < delta < 1/N = {1 / num_images:.3g} (N = {num_images} images)"
        )
    accountant = opts.dp_accountant or DEFAULT_ACCOUNTANT
    accounting.check_accountant(accountant)
    max_norm = DEFAULT_MAX_GRAD_NORM if opts.dp_max_grad_norm is None else float(opts.dp_max_grad_norm)
    planned_steps = math.ceil(args.total_kimg * 1000 / args.batch_size)
    unit = opts.dp_unit or DEFAULT_UNIT
    judge = _judge_account(opts, unit)
    start = _start_account(opts, args, saved_options)
    public = _public_reals_account(opts, args)
    spent = tuple((s, q, n) for _, s, q, n in judge["composed_with"])
    if noise:
        multiplier = _noise_multiplier(opts, sample_rate, delta, accountant, planned_steps, saved_options, spent)
    else:  # the noise ablation draws none, so no sigma is asked for (a given one is recorded as it is)
        multiplier = float(opts.dp_noise_multiplier or 0.0)
    private = MechanismConfig(max_norm, multiplier, clip, noise).is_private
    args.dp = dict(
        mode="dpsgd",
        noise_multiplier=multiplier,
        max_grad_norm=max_norm,
        delta=delta,
        accountant=accountant,
        unit=unit,
        sample_rate=sample_rate,
        epsilon_budget=float(opts.dp_epsilon) if opts.dp_epsilon is not None and private else None,
        clip=clip,
        noise=noise,
        r1_interval=R1_INTERVAL,
        label_prior=_label_prior(opts.dp_label_prior),
        secure_rng=bool(opts.dp_secure_rng),
        d_steps=int(opts.dp_d_steps or 1),
        physical_batch=opts.dp_physical_batch,
        public_reals=opts.dp_public_reals,
        public_weight=1.0 if opts.dp_public_weight is None else float(opts.dp_public_weight),
        private_params=opts.dp_private_params or "all",
        private_weight=1.0 if opts.dp_private_weight is None else float(opts.dp_private_weight),
        **_private_critic(opts, args),
        composed_with=judge["composed_with"],
        declared_public=public + start["declared_public"] + judge["declared_public"],
        outside_account=start["outside_account"] + judge["outside_account"],
    )
    tag = f"dp-eps{opts.dp_epsilon:g}" if opts.dp_epsilon is not None else f"dp-sigma{multiplier:.3g}"
    tag += f"-dsteps{args.dp['d_steps']}" if args.dp["d_steps"] > 1 else ""
    tag += f"-pbatch{opts.dp_private_batch}" if opts.dp_private_batch is not None else ""
    tag += "-publicreals" if public else ""
    tag += f"-private{args.dp['private_params']}" if args.dp["private_params"] != "all" else ""
    tag += f"-privateweight{args.dp['private_weight']:g}" if args.dp["private_weight"] != 1.0 else ""
    tag += f"-critic{args.dp['private_critic'].replace(',', '-')}" if args.dp["private_critic"] else ""
    tag += f"-cweight{args.dp['critic_weight']:g}" if args.dp["critic_weight"] != 1.0 else ""
    return [tag + _ablation_tag(clip, noise)] + ([] if private else ["notdp"])


# Options of D's DP-SGD mechanism, which a run on public --data does not have.
MECHANISM_OPTIONS = (
    "dp_noise_multiplier",
    "dp_max_grad_norm",
    "dp_clip",
    "dp_noise",
    "dp_d_steps",
    "dp_private_batch",
    "dp_physical_batch",
    "dp_pretrain_public",
    "dp_secure_rng",
    "dp_public_reals",
    "dp_private_weight",
    "dp_private_params",
    "dp_private_critic",
    "dp_critic_weight",
)


def _private_batch(opts: Any, args: Any) -> int:
    """The expected private batch: --dp-private-batch, else --batch; at most the number of images."""
    num_images = int(args.training_set_kwargs.max_size)
    if opts.dp_private_batch is None:
        if args.batch_size > num_images:
            raise guards.DPConfigError(
                f"--dp=1: the batch ({args.batch_size}) exceeds the number of images ({num_images}); lower --batch"
            )
        return int(args.batch_size)
    if opts.dp_private_batch > num_images:
        raise guards.DPConfigError(
            f"--dp-private-batch={opts.dp_private_batch}: expected at most the number of images ({num_images})"
        )
    return int(opts.dp_private_batch)


def _private_critic(opts: Any, args: Any) -> dict:
    """args.dp's private-critic entries (None: D takes the private term); with a critic, D judges only renders of
    class 0, the class of the declared-public images."""
    if opts.dp_private_critic is None:
        if opts.dp_critic_weight is not None:
            raise guards.DPConfigError("--dp-critic-weight needs --dp-private-critic=<channels>")
        return dict(private_critic=None, critic_weight=1.0)
    if opts.dp_private_params not in (None, "all"):
        raise guards.DPConfigError("--dp-private-params and --dp-private-critic both say what the private images train")
    try:
        channels = private_critic.parse_channels(opts.dp_private_critic, args.dataset_info["resolution"])
    except ValueError as exc:
        raise guards.DPConfigError(str(exc)) from None
    if _g_label_dim(args) > 0:
        args.loss_kwargs.adversarial_class = 0
    weight = 1.0 if opts.dp_critic_weight is None else float(opts.dp_critic_weight)
    return dict(private_critic=",".join(map(str, channels)), critic_weight=weight)


def _configure_public_data(opts: Any, args: Any) -> list[str]:
    """--dp-data-public=1: no private D steps; the account is the clinical judge's (its epsilon within any
    --dp-epsilon budget), and declares the training images public."""
    given = [resume_options.flag(name) for name in MECHANISM_OPTIONS if opts.get(name) is not None]
    if given:
        raise guards.DPConfigError(f"--dp-data-public=1: {given[0]} belongs to DP-SGD on private --data; leave it out")
    if opts.clinical_loss is None:
        raise guards.DPConfigError(
            "--dp-data-public=1 needs --clinical-loss=<judge.pkl>: with public --data, the judge is the only way "
            "private images reach the generator"
        )
    num_images = int(args.training_set_kwargs.max_size)
    delta = DEFAULT_DELTA if opts.dp_delta is None else float(opts.dp_delta)
    accountant = opts.dp_accountant or DEFAULT_ACCOUNTANT
    accounting.check_accountant(accountant)
    unit = opts.dp_unit or DEFAULT_UNIT
    judge = _judge_account(opts, unit)
    spent = accounting.composed_epsilon(tuple((s, q, n) for _, s, q, n in judge["composed_with"]), delta, accountant)
    if opts.dp_epsilon is not None and spent > float(opts.dp_epsilon):
        raise guards.DPConfigError(
            f"--dp-epsilon={opts.dp_epsilon:g}: the judge --clinical-loss={opts.clinical_loss} alone spent epsilon "
            f"{spent:.4g} at delta {delta:g}"
        )
    args.dp = dict(
        mode="public-data",
        noise_multiplier=0.0,  # no private D step is ever taken: D's part of the account stays at 0 steps
        max_grad_norm=DEFAULT_MAX_GRAD_NORM,
        delta=delta,
        accountant=accountant,
        unit=unit,
        sample_rate=min(1.0, args.batch_size / num_images),
        label_prior=_label_prior(opts.dp_label_prior),
        composed_with=judge["composed_with"],
        declared_public=[f"the training images {opts.data} (--dp-data-public=1)"] + judge["declared_public"],
        outside_account=judge["outside_account"],
    )
    return ["dp-publicdata"]


def _judge_account(opts: Any, unit: str) -> dict:
    """What the clinical loss's judge adds to the account: {composed_with, declared_public, outside_account}."""
    none = dict(composed_with=[], declared_public=[], outside_account=list(ledger.OUTSIDE_ACCOUNT))
    if opts.clinical_loss is None:
        if opts.dp_judge_public:
            raise guards.DPConfigError("--dp-judge-public=1 needs --clinical-loss=<classifier.pkl>")
        return none
    from spine.classifier.artifact import load_classifier

    privacy = load_classifier(opts.clinical_loss).provenance.get("privacy")
    if privacy is not None:
        if opts.dp_judge_public:
            raise guards.DPConfigError(
                f"--dp-judge-public=1: --clinical-loss={opts.clinical_loss} was trained with DP-SGD on private "
                f"images (its account is composed into this run's); the option is for a judge trained on public data"
            )
        if privacy["unit"] != unit:
            raise guards.DPConfigError(
                f"--dp-unit={unit}: the judge --clinical-loss={opts.clinical_loss} protects one {privacy['unit']}; "
                f"the two accounts compose only for the same privacy unit"
            )
        entries = [
            [f"judge:{i}" if len(privacy["history"]) > 1 else "judge", *entry]
            for i, entry in enumerate(privacy["history"])
        ]
        return dict(none, composed_with=entries)
    if opts.dp_judge_public:
        return dict(none, declared_public=[f"the clinical loss's judge {opts.clinical_loss} (--dp-judge-public=1)"])
    return dict(none, outside_account=[ledger.JUDGE_OUTSIDE_ACCOUNT, *ledger.OUTSIDE_ACCOUNT])


def _public_reals_account(opts: Any, args: Any) -> list[str]:
    """--dp-public-reals: checked against the run's images and D's labels now, without reading every image
    (DPConfigError naming the flag), so a mismatch stops the run before it starts; the account's entry."""
    if opts.dp_public_reals is None:
        return []
    from spine.dp.public_reals import open_public_reals

    info = args.dataset_info
    public = open_public_reals(opts.dp_public_reals, info["resolution"], info["num_channels"], _d_label_dim(args))
    public.close()
    return [
        f"the real images {opts.dp_public_reals} ({len(public)}) D reads beside the private ones (--dp-public-reals)"
    ]


def _d_label_dim(args: Any) -> int:
    """How many label entries D takes: 0 with --d-cond=0 or unlabelled data, else the dataset's."""
    if not args.training_set_kwargs.use_labels:
        return 0
    return int(args.D_kwargs.get("c_dim", args.dataset_info["label_dim"]))


def _start_account(opts: Any, args: Any, saved_options: dict | None) -> dict:
    """What a transfer-learning start adds to the account's statement: {declared_public, outside_account}. The start
    is --resume=<snapshot.pkl>, or for a continued run (`saved_options`: its checkpoint's) the one it started from."""
    start = args.get("resume_pkl") or (saved_options or {}).get("resume_pkl")
    if start is None:
        if opts.dp_pretrain_public:
            raise guards.DPConfigError(
                "--dp-pretrain-public=1 needs --resume=<snapshot.pkl>: the pretrained start it declares public"
            )
        return dict(declared_public=[], outside_account=[])
    if opts.dp_pretrain_public:
        return dict(declared_public=[f"the pretrained start {start} (--dp-pretrain-public=1)"], outside_account=[])
    return dict(
        declared_public=[],
        outside_account=[
            f"the pretrained start {start}: what it learned from its training images (not declared public with "
            "--dp-pretrain-public=1)"
        ],
    )


def _noise_multiplier(
    opts: Any,
    sample_rate: float,
    delta: float,
    accountant: str,
    planned_steps: int,
    saved_options: dict | None,
    spent: tuple = (),
) -> float:
    """--dp-noise-multiplier, the resumed run's sigma, or sigma calibrated to --dp-epsilon for the planned steps
    (composed with the mechanisms already `spent` on the same records)."""
    if opts.dp_noise_multiplier is not None:
        if opts.dp_noise_multiplier < 0:
            raise guards.DPConfigError(f"--dp-noise-multiplier must be non-negative, got {opts.dp_noise_multiplier}")
        return float(opts.dp_noise_multiplier)
    if saved_options is not None and (saved_options.get("dp") or {}).get("noise_multiplier") is not None:
        return float(saved_options["dp"]["noise_multiplier"])
    if opts.dp_epsilon is None:
        raise guards.DPConfigError("--dp=1 needs --dp-noise-multiplier or --dp-epsilon (with --dp-delta)")
    try:
        return accounting.calibrate_noise_multiplier(
            float(opts.dp_epsilon), delta, sample_rate, planned_steps, accountant, spent
        )
    except ValueError as exc:
        raise guards.DPConfigError(str(exc)) from None


def _label_prior(text: str | None) -> list[float] | None:
    """--dp-label-prior: 'uniform' (default) or comma-separated class probabilities."""
    if text is None or text == "uniform":
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise guards.DPConfigError(
            f"--dp-label-prior={text!r}: expected 'uniform' or comma-separated probabilities"
        ) from exc


def _ablation_tag(clip: bool, noise: bool) -> str:
    return ("" if clip else "-noclip") + ("" if noise else "-nonoise")


def build(args: Any, device: torch.device) -> LoopPlugins:
    """The loop plug-ins for args.dp: D (and in paper mode G) update rule; for DP-SGD also the Poisson sampling of
    the reals, the fake-label prior and the privacy account's record, budget stop and tick report."""
    dp = args.get(SETTING)
    if not dp:
        return LoopPlugins()
    if dp["mode"] == "paper":
        step = paper_mode.NoiseThenClipStep(
            dp["noise_multiplier"] * dp["max_grad_norm"], dp["max_grad_norm"], noise=dp["noise"], clip=dp["clip"]
        )
        return LoopPlugins(discriminator_update=step, generator_update=step)
    if dp["mode"] == "public-data":
        return _public_data_plugins(args, dp)
    from spine.dp.ledger import AccountRecord, BudgetStop, PrivacyReport
    from spine.dp.sampling import PoissonSampling
    from spine.dp.update import DPDiscriminatorUpdate

    config = MechanismConfig(
        dp["max_grad_norm"], dp["noise_multiplier"], dp["clip"], dp["noise"], secure_rng=dp["secure_rng"]
    )
    note = "" if config.is_private else "ablation:" + _ablation_tag(dp["clip"], dp["noise"]).lstrip("-")
    account = _account(dp, epsilon_budget=dp["epsilon_budget"], differentially_private=config.is_private, note=note)
    sampling = PoissonSampling(
        dp["unit"], dp["sample_rate"], args.training_set_kwargs.max_size, secure=config.secure_rng
    )
    critic = _critic_term(args, dp, device)
    update = DPDiscriminatorUpdate(
        account,
        config,
        sampling.expected_batch_size,
        r1_gamma=args.loss_kwargs.r1_gamma,
        r1_interval=dp["r1_interval"],
        physical_batch=dp["physical_batch"],
        public=_public_reals(args, dp),
        public_weight=dp.get("public_weight", 1.0),
        private_scope=dp.get("private_params", "all"),
        private_weight=dp.get("private_weight", 1.0),
        critic=critic,
    )
    d_steps = dp["d_steps"]
    return LoopPlugins(
        discriminator_update=update,
        generator_terms=() if critic is None else (critic,),
        generator_update=EveryNthStep(GradientStep(), d_steps) if d_steps > 1 else None,
        real_sampling=sampling,
        fake_labels=_fake_label_prior(args, dp),
        others=dict(
            privacy_account=AccountRecord(account),
            privacy_budget=BudgetStop(account),
            privacy_report=PrivacyReport(account),
        ),
    )


def _public_reals(args: Any, dp: dict) -> Any:
    """The run's `PublicReals` (--dp-public-reals), or None; runs recorded before the option have no entry."""
    if dp.get("public_reals") is None:
        return None
    from spine.dp.public_reals import load_public_reals

    info = args.dataset_info
    return load_public_reals(dp["public_reals"], info["resolution"], info["num_channels"], _d_label_dim(args))


def _critic_term(args: Any, dp: dict, device: torch.device) -> private_critic.PrivateCriticTerm | None:
    """The run's private critic and its term in G's loss (--dp-private-critic), or None."""
    if not dp.get("private_critic"):
        return None
    info = args.dataset_info
    channels = private_critic.parse_channels(dp["private_critic"], info["resolution"])
    with torch.random.fork_rng(devices=[]):  # weights from the run's seed, the global stream untouched
        torch.manual_seed(args.random_seed)
        net = private_critic.PrivateCritic(info["resolution"], info["num_channels"], _g_label_dim(args), channels)
    return private_critic.PrivateCriticTerm(net.to(device), dp["critic_weight"])


def _g_label_dim(args: Any) -> int:
    """G's label entries: the dataset's for a conditional run, else 0."""
    return int(args.dataset_info["label_dim"]) if args.training_set_kwargs.use_labels else 0


def _public_data_plugins(args: Any, dp: dict) -> LoopPlugins:
    """--dp-data-public=1: D's standard update, fake labels from the public prior, and the account (the judge's
    mechanisms composed, D's own steps always 0) recorded and reported."""
    from spine.dp.ledger import AccountRecord, PrivacyReport

    account = _account(dp)
    return LoopPlugins(
        fake_labels=_fake_label_prior(args, dp),
        others=dict(privacy_account=AccountRecord(account), privacy_report=PrivacyReport(account)),
    )


def _account(dp: dict, **settings: Any) -> accounting.PrivacyAccount:
    """The run's privacy account from its DP settings (`settings`: the budget and labels of a DP-SGD run)."""
    return accounting.PrivacyAccount(
        noise_multiplier=dp["noise_multiplier"],
        sample_rate=dp["sample_rate"],
        delta=dp["delta"],
        accountant=dp["accountant"],
        max_grad_norm=dp["max_grad_norm"],
        unit=dp["unit"],
        composed_with=dp["composed_with"],
        declared_public=dp["declared_public"],
        outside_account=dp["outside_account"],
        **settings,
    )


def _fake_label_prior(args: Any, dp: dict) -> guards.PublicLabelPrior:
    labels = args.dataset_info
    return guards.PublicLabelPrior(
        labels["label_dim"], onehot=labels["onehot_labels"] or labels["label_dim"] == 0, probs=dp["label_prior"]
    )


PLUGIN = DeclaredPlugin(SETTING, OPTIONS, configure, build)

"""An experiment's configuration: the generator variants and pools, every setting, as read from JSON and the
command line, and the options each consumer gets from it (built here, in one place).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import dnnlib
from spine.classifier.artifact import INPUT_NORMS
from spine.classifier.models import ARCHITECTURES
from spine.classifier.training import TrainOptions
from spine.evaluation.downstream import DownstreamOptions
from spine.evaluation.panel import PanelMember
from training.networks import NOISE_MODES


@dataclasses.dataclass(frozen=True)
class Variant:
    """One generator: name, clinical-loss weight (0 = plain conditional StyleGAN2-ADA), extra train.py options, and
    optionally its own label mode (e.g. 'lesion' for the paper's lesion-type model; None = the experiment's) and
    training seed (None = the experiment's; replicates of an arm differ only in it) and training length in kimg
    (None = the experiment's; e.g. one generator trained for a pool's combined kimg), and for a --dp=1 variant the
    epsilon of its clinical loss's DP judge (None = the experiment's `dp_judge_epsilon`), and how many of its last
    snapshots its images are drawn from (None = the experiment's `synth_snapshots`; e.g. a shorter run keeps fewer)."""

    name: str
    clinical_weight: float = 0.0
    train_args: tuple[str, ...] = ()
    labels: str | None = None
    seed: int | None = None
    kimg: int | None = None
    dp_judge_epsilon: float | None = None
    synth_snapshots: int | None = None

    @property
    def private(self) -> bool:
        """Trained with train.py --dp=1."""
        return "--dp=1" in self.train_args

    @property
    def needs_public_reals(self) -> bool:
        """A DP variant with a private critic (train.py --dp-private-critic) whose arguments name no public images:
        its D learns from the public images and the fakes alone, so the experiment gives it its public draw
        (--dp-public-reals)."""
        args = self.train_args
        critic = any(a.startswith("--dp-private-critic=") for a in args)
        return self.private and critic and not any(a.startswith("--dp-public-reals=") for a in args)


@dataclasses.dataclass(frozen=True)
class Pool:
    """A synthetic arm of several variants' images together (spine.evaluation.pooling), e.g. one arm's training
    seeds: no generator of its own, scored downstream like a variant. Matched comparisons (issue 26): the pool is
    also scored subsampled to one member's image count (the arm `<name>-matched`, `spine.pipeline.arms`), and
    against `long_generator`, when given: a variant like the members but trained for their combined kimg."""

    name: str
    members: tuple[str, ...]
    long_generator: str | None = None

    @property
    def matched_name(self) -> str:
        """The arm of this pool's images subsampled to one member's count."""
        return f"{self.name}-matched"


LABEL_MODES = ("abnormality", "lesion")  # what a variant can be conditioned on (spine.data.labels)
PAPER_VARIANTS = (Variant("stylegan2-ada"), Variant("spinegan", clinical_weight=0.1))
# (treated, control): the variants that differ only in the clinical loss; with replicate seeds, the headline and the
# report state the loss's effect paired by seed (spine.pipeline.seeds)
CLINICAL_LOSS_PAIR = ("spinegan", "stylegan2-ada")
# DP-SGD refuses ADA (its controller reads D's scores on real images without privacy), hence no augmentation.
PUBLIC_DRAW_OFFSET = 2**22  # public phantom draws: seed = the experiment's draw + this (above every mode's draws)
CLASS_REFERENCE_OFFSET = 2**23  # class-mean reference draws: the experiment's draw + this (above the public ones)
DP_VARIANT = Variant("spinegan-dp", clinical_weight=0.1, train_args=("--dp=1", "--dp-epsilon=10", "--aug=noaug"))


def default_variants() -> tuple[Variant, ...]:
    """The paper's models: plain conditional StyleGAN2-ADA, SpineGAN, and SpineGAN under DP-SGD."""
    return PAPER_VARIANTS + (DP_VARIANT,)


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines an experiment. `source` is a VinDr-SpineXR root; None makes a phantom."""

    source: str | None = None
    phantom_train: int = 1200
    phantom_test: int = 400
    phantom_size: int = 128
    phantom_difficulty: float = 0.5
    phantom_lesion_scale: float = 1.0
    phantom_zoom: float = 1.0
    resolution: int = 32
    labels: str = "abnormality"
    # spine.classifier.models.ARCHITECTURES and INPUT_NORMS below: for every classifier the experiment trains (the
    # clinical loss's judge, the independent judge and every downstream arm: one protocol for all)
    classifier_arch: str = "small_cnn"
    classifier_epochs: int = 20
    classifier_patience: int = 5
    gan_cfg: str = "demo"
    kimg: int = 20
    snap: int = 5
    variants: tuple[Variant, ...] = dataclasses.field(default_factory=default_variants)
    pools: tuple[Pool, ...] = ()
    synth_per_class: int = 500
    synth_trunc: float = 1.0
    # None: draw every image as it is; a fraction in (0, 1]: abnormal images are their latent's normal rendering plus
    # the strongest part of the class difference (spine.evaluation.local_difference); abnormality generators only
    # (a lesion-type generator has no normal class and draws as it is)
    synth_local_difference: float | None = None
    # G's noise inputs when drawing: 'const' (one fixed pattern for every image, generate.py's default) or 'random'
    # (drawn per image, seeded per batch), which a generator trained with --class-mean-match needs: it carries part of
    # its images' spread in the noise inputs, so a fixed pattern shifts every image alike (docs/RESULTS.md AH)
    synth_noise_mode: str = "const"
    # Each latent rendered in every class (twins sharing a study id, spine.evaluation.synthesize): the set's class
    # difference is then G's own, without the sampling noise of independent poses (docs/RESULTS.md AK)
    synth_twins: bool = False
    # Each generator's images drawn in equal shares from its last `synth_snapshots` snapshots (every `snap` ticks): a
    # trajectory pool (spine.evaluation.synthesize); 1 = the final snapshot alone. Under DP the account at the end of
    # a run covers every snapshot of it. The metrics and the privacy audit read the final snapshot; with several,
    # the metrics that have a form for a set of images read the pool too ('set-metrics/<variant>').
    synth_snapshots: int = 1
    metrics: tuple[str, ...] = ("fid1k_full", "label_fidelity200")
    downstream_epochs: int = 20
    downstream_patience: int = 5
    classifier_input_norm: str = "dataset"
    n_resamples: int = 1000
    seed: int = 0
    report: bool = True
    # A second classifier (seed + 1, same training images) that no GAN trains against: label fidelity by it is
    # the honest measure, since the clinical loss teaches a generator what its own judge looks at.
    independent_judge: bool = True
    # The independent judge's classifier ('ARCH:NORM', as a panel member; None: the experiment's own) and whether it
    # trains on half A of the training studies only (spine.data.halves): its feature-space metrics (*_spine, run
    # again with it as independent_*) then measure against half B, which it never saw, as it never saw the generated
    # or the test images; no generator trains against it either way.
    judge: str | None = None
    judge_half: bool = False
    # Memorisation and membership inference of every generator (spine.evaluation.privacy_audit): training images as
    # members, the test split as non-members (an evaluation, like the downstream test; it informs no choice).
    privacy_audit: bool = False
    # The audit's white-box attack by inversion (projection into W): members and non-members inverted per generator,
    # 0 = off; and the projection steps. Cost: about steps x a generator forward/backward pass on 2N images.
    privacy_inversion: int = 0
    privacy_inversion_steps: int = 100
    # An evaluator panel (spine.evaluation.panel) scores every synthetic arm of the experiment's label mode with these
    # members ('ARCH:NORM'); the member that matches the downstream protocol reuses its models. () = no panel.
    panel: tuple[str, ...] = ()
    # The clinical loss's judge of every --dp=1 variant: None = the experiment's classifier (trained without DP; the
    # account names it outside); a positive epsilon = a judge trained with DP-SGD at this epsilon (delta 1e-5,
    # spine.dp.judge), whose account train.py composes with D's: the variant's --dp-epsilon is then the total.
    dp_judge_epsilon: float | None = None
    # The DP judge's network and input normalisation ('ARCH:NORM', spine.dp.judge: small_cnn or patch_cnn, with
    # per-image 'image' or the fixed 'dataset' map); None = the experiment's classifier_arch (small_cnn if it has no
    # GroupNorm variant) on per-image normalisation.
    dp_judge_model: str | None = None
    # Public pretraining of every --dp=1 variant (DPImageBench's strongest lever): a generator trained this many kimg
    # without DP on public images, from which each DP variant starts (train.py --resume=<it> --dp-pretrain-public=1,
    # so the account declares it public); None = from scratch. Phantom experiments only: the public images are the
    # normal studies of another draw (`public_draw_seed`), which shares no image or study with any experiment's
    # draw and carries no abnormality a DP variant could copy (the abnormal class is learnt from private images).
    dp_public_pretrain_kimg: int | None = None
    # The phantom's draw (None: `seed`): an experiment's test studies are those of its draw, so two experiments
    # whose draws differ share no test study.
    phantom_seed: int | None = None
    # Every pool also scored subsampled to one member's image count (`<pool>-matched`, seeded by `seed`): whether a
    # pool gains by variety or by its count alone. Cheap: one synthetic-only classifier per pool.
    pool_matched: bool = True
    # The arms the evaluator panel scores (variant, pool and `<pool>-matched` names); () = every arm of the
    # experiment's label mode. A replicated arm is grouped over those of its seeds listed.
    panel_arms: tuple[str, ...] = ()
    # Training curves (spine.pipeline.curve): each generator of `curve_arms` (every replicate seed of each) scored at
    # its first snapshot at or after each of `curve_kimg`: `curve_metrics` (registered metric names; label fidelity
    # again by the independent judge) and the synthetic-only skill ratio of each `curve_panel` member (a panel member
    # or the downstream protocol's own, whose real-trained model is reused). () = no curve.
    curve_kimg: tuple[int, ...] = ()
    curve_arms: tuple[str, ...] = CLINICAL_LOSS_PAIR
    curve_metrics: tuple[str, ...] = ()
    curve_panel: tuple[str, ...] = ()
    # Phantom experiments: this many fresh phantom images of the same kind (another draw, `class_reference_seed`,
    # never a split of any experiment) as the real side of the class-mean figures (spine.evaluation.class_means:
    # class difference r and RMS ratio, class-mean detail) of the training, test and synthetic images. The training
    # images' own class difference is mostly sampling noise (two halves of 1,000 images correlate at r 0.3), so
    # against it no set, real or synthetic, can read r near 1; against 5,000 fresh images the training split reads
    # about 0.7. 0 = off.
    class_reference: int = 0
    # {curve figure: threshold} for kimg-to-threshold: the first curve kimg at which the figure reaches it (at or
    # above; at or below for FID and KID figures).
    curve_thresholds: dict[str, float] = dataclasses.field(default_factory=dict)

    @staticmethod
    def from_dict(data: dict[str, Any], where: str = "config") -> ExperimentConfig:
        """Build from plain data (a JSON file); unknown keys and malformed variants are refused by name."""
        known = {f.name for f in dataclasses.fields(ExperimentConfig)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(known)}")
        data = dict(data)
        if "variants" in data:
            data["variants"] = tuple(_variant(v, f"{where}.variants[{i}]") for i, v in enumerate(data["variants"]))
        if "pools" in data:
            data["pools"] = tuple(_pool(p, f"{where}.pools[{i}]") for i, p in enumerate(data["pools"]))
        for key in ("metrics", "panel", "panel_arms", "curve_kimg", "curve_arms", "curve_metrics", "curve_panel"):
            if key in data:
                if not isinstance(data[key], (list, tuple)):
                    raise ValueError(f"{where}.{key}: expected a list, got {data[key]!r}")
                data[key] = tuple(data[key])
        config = ExperimentConfig(**data)
        config.check(where)
        return config

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def check(self, where: str = "config") -> None:
        names = [v.name for v in self.variants]
        if not names or len(set(names)) != len(names) or not all(n and "/" not in n for n in names):
            raise ValueError(
                f"{where}.variants: need at least one variant, with distinct names without '/', got {names}"
            )
        self._check_pools(where)
        for field in dataclasses.fields(self):  # a JSON "no" would read as true
            if isinstance(field.default, bool) and not isinstance(getattr(self, field.name), bool):
                raise ValueError(f"{where}.{field.name}: expected true or false, got {getattr(self, field.name)!r}")
        if self.resolution < 8 or self.resolution & (self.resolution - 1):
            raise ValueError(f"{where}.resolution: expected a power of two >= 8, got {self.resolution}")
        if self.kimg < 1 or self.synth_per_class < 2:
            raise ValueError(f"{where}: kimg must be >= 1 and synth_per_class >= 2")
        self._check_synth_snapshots(where)
        if self.class_reference < 0 or (self.class_reference and self.source is not None):
            raise ValueError(
                f"{where}.class_reference: expected 0, or a number of phantom images for a phantom experiment "
                f"(source null), got {self.class_reference} with source {self.source!r}"
            )
        if self.synth_local_difference is not None and not 0 < self.synth_local_difference <= 1:
            raise ValueError(
                f"{where}.synth_local_difference: expected a fraction in (0, 1] or null, "
                f"got {self.synth_local_difference}"
            )
        if self.synth_noise_mode not in NOISE_MODES:
            raise ValueError(
                f"{where}.synth_noise_mode: expected one of {list(NOISE_MODES)}, got {self.synth_noise_mode!r}"
            )
        if self.classifier_arch not in ARCHITECTURES:
            raise ValueError(
                f"{where}.classifier_arch: expected one of {list(ARCHITECTURES)}, got {self.classifier_arch!r}"
            )
        if self.classifier_input_norm not in INPUT_NORMS:
            raise ValueError(
                f"{where}.classifier_input_norm: expected one of {list(INPUT_NORMS)}, "
                f"got {self.classifier_input_norm!r}"
            )
        self._check_panel(where)
        if self.dp_judge_epsilon is not None and not self.dp_judge_epsilon > 0:
            raise ValueError(
                f"{where}.dp_judge_epsilon: expected a positive epsilon or null, got {self.dp_judge_epsilon}"
            )
        if self.dp_judge_model is not None:
            self.dp_judge_options(where)
        if self.dp_public_pretrain_kimg is not None and (self.dp_public_pretrain_kimg < 1 or self.source is not None):
            raise ValueError(
                f"{where}.dp_public_pretrain_kimg: expected a positive kimg or null, and a phantom experiment (source "
                f"null: the public images are another phantom draw's), got {self.dp_public_pretrain_kimg} with "
                f"source {self.source!r}"
            )
        if self.source is not None and any("--dp-data-public=1" in v.train_args for v in self.variants):
            raise ValueError(
                f"{where}.variants: --dp-data-public=1 trains on another phantom draw's images, so it needs a phantom "
                f"experiment (source null), got source {self.source!r}"
            )
        if self.source is not None and any(v.needs_public_reals for v in self.variants):
            raise ValueError(
                f"{where}.variants: --dp-private-critic without --dp-public-reals=<images> reads another phantom "
                f"draw's images, so it needs a phantom experiment (source null), got source {self.source!r}"
            )
        if self.judge is not None:
            try:
                PanelMember.parse(self.judge)
            except ValueError as exc:
                raise ValueError(f"{where}.judge: {exc}") from None
        self._check_curve(where)

    def dp_judge_epsilon_of(self, variant: Variant) -> float | None:
        """The epsilon of a --dp=1 variant's DP judge (its own, else the experiment's); None: its clinical loss uses the
        experiment's classifier, as every non-private variant's does."""
        if not variant.private:
            return None
        return self.dp_judge_epsilon if variant.dp_judge_epsilon is None else variant.dp_judge_epsilon

    def dp_judge_options(self, where: str = "config") -> dict[str, str]:
        """The DP judge's `arch` and `input_norm` (spine.dp.judge.PrivateJudgeOptions); ValueError naming the field."""
        from spine.dp.judge import JUDGE_ARCHS, JUDGE_INPUT_NORMS

        if self.dp_judge_model is None:
            arch = self.classifier_arch if self.classifier_arch in JUDGE_ARCHS else "small_cnn"
            return dict(arch=arch, input_norm="image")
        arch, _, norm = self.dp_judge_model.partition(":")
        if arch not in JUDGE_ARCHS or norm not in JUDGE_INPUT_NORMS:
            raise ValueError(
                f"{where}.dp_judge_model: expected 'ARCH:NORM' with ARCH in {list(JUDGE_ARCHS)} and NORM in "
                f"{list(JUDGE_INPUT_NORMS)}, got {self.dp_judge_model!r}"
            )
        return dict(arch=arch, input_norm=norm)

    def dp_judge_epsilons(self) -> list[float]:
        """Every DP judge the experiment trains, by epsilon."""
        return sorted({e for e in map(self.dp_judge_epsilon_of, self.variants) if e is not None})

    def _check_synth_snapshots(self, where: str) -> None:
        """Every run keeps the snapshots its images are drawn from (the presets' ticks are 1 kimg or more); the error
        names the variant's own field when it sets one."""
        for index, variant in enumerate(self.variants):
            kept = self.kimg_of(variant) // self.snap + 1
            wanted = self.synth_snapshots_of(variant)
            if not 1 <= wanted <= kept:
                field = "synth_snapshots" if variant.synth_snapshots is None else f"variants[{index}].synth_snapshots"
                raise ValueError(
                    f"{where}.{field}: expected 1 to {kept} (snapshots every {self.snap} ticks of "
                    f"{variant.name}'s {self.kimg_of(variant)} kimg), got {wanted}"
                )

    def synth_snapshots_of(self, variant: Variant) -> int:
        """How many of a variant's last snapshots its images are drawn from: its own, else the experiment's."""
        return self.synth_snapshots if variant.synth_snapshots is None else variant.synth_snapshots

    def kimg_of(self, variant: Variant) -> int:
        """The kimg a variant's GAN trains for: its own, else the experiment's."""
        return self.kimg if variant.kimg is None else variant.kimg

    def arm_names(self) -> list[str]:
        """Every synthetic arm's generator name: variants, pools and, with `pool_matched`, the matched pools."""
        matched = [p.matched_name for p in self.pools] if self.pool_matched else []
        return [v.name for v in self.variants] + [p.name for p in self.pools] + matched

    def _check_curve(self, where: str) -> None:
        variants = {v.name: v for v in self.variants}
        kimgs = list(self.curve_kimg)
        if not all(isinstance(k, int) and k >= 1 for k in kimgs) or kimgs != sorted(set(kimgs)):
            raise ValueError(f"{where}.curve_kimg: expected increasing distinct kimg >= 1, got {kimgs}")
        unknown = [name for name in self.curve_arms if name not in variants or self.mode_of(name) != self.labels]
        if kimgs and (unknown or not self.curve_arms):
            raise ValueError(
                f"{where}.curve_arms: expected names of variants of the {self.labels!r} labels (of "
                f"{sorted(variants)}), got {unknown or list(self.curve_arms)}"
            )
        too_short = [
            v.name for v in self.variants if v.name in self.curve_arms and kimgs and self.kimg_of(v) < kimgs[-1]
        ]
        if too_short:
            raise ValueError(f"{where}.curve_kimg: {kimgs[-1]} kimg is beyond the training of {too_short}")
        try:
            curve = [PanelMember.parse(text) for text in self.curve_panel]
        except ValueError as exc:
            raise ValueError(f"{where}.curve_panel: {exc}") from None
        scored = {m.name for m in panel_members(self)} | {f"{self.classifier_arch}:{self.classifier_input_norm}"}
        if curve and self.labels != "abnormality":
            raise ValueError(
                f"{where}.curve_panel: skill ratios need binary labels ('abnormality'), got {self.labels!r}"
            )
        if any(m.name not in scored for m in curve):
            raise ValueError(
                f"{where}.curve_panel: expected members of the panel or the downstream protocol's "
                f"({sorted(scored)}), got {list(self.curve_panel)}"
            )
        thresholds = self.curve_thresholds
        if not isinstance(thresholds, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) for k, v in thresholds.items()
        ):
            raise ValueError(f"{where}.curve_thresholds: expected {{figure: number}}, got {thresholds!r}")

    def _check_panel(self, where: str) -> None:
        try:
            members = panel_members(self)
        except ValueError as exc:
            raise ValueError(f"{where}.panel: {exc}") from None
        if len({m.name for m in members}) != len(members):
            raise ValueError(f"{where}.panel: a member is listed twice in {list(self.panel)}")
        unknown = [name for name in self.panel_arms if name not in self.arm_names()]
        if unknown:
            raise ValueError(f"{where}.panel_arms: expected arm names (of {self.arm_names()}), got {unknown}")

    @property
    def draw_seed(self) -> int:
        """The phantom draw's seed."""
        return self.seed if self.phantom_seed is None else self.phantom_seed

    @property
    def public_draw_seed(self) -> int:
        """The seed of the phantom draw whose normal studies are this experiment's public images: above every
        experiment's draw (the modes draw below 2**21 + 2**20), so public and private images never coincide."""
        return self.draw_seed + PUBLIC_DRAW_OFFSET

    @property
    def class_reference_seed(self) -> int:
        """The seed of the phantom draw of the class-mean reference (`class_reference`): above the public draws."""
        return self.draw_seed + CLASS_REFERENCE_OFFSET

    def _check_pools(self, where: str) -> None:
        """Pool names are new arm names; members are two or more variants of one label mode."""
        modes = {v.name: v.labels or self.labels for v in self.variants}
        names = [p.name for p in self.pools]
        for i, pool in enumerate(self.pools):
            if not pool.name or "/" in pool.name or pool.name in modes or names.count(pool.name) > 1:
                raise ValueError(
                    f"{where}.pools[{i}].name: expected a name without '/' that no variant or other "
                    f"pool has, got {pool.name!r}"
                )
            unknown = [m for m in pool.members if m not in modes]
            if len(set(pool.members)) < 2 or len(set(pool.members)) < len(pool.members) or unknown:
                raise ValueError(
                    f"{where}.pools[{i}].members: expected two or more distinct variant names (of "
                    f"{sorted(modes)}), got {list(pool.members)}"
                )
            if len({modes[m] for m in pool.members}) > 1:
                raise ValueError(
                    f"{where}.pools[{i}].members: variants of different label modes cannot share a "
                    f"classifier's labels, got { ({m: modes[m] for m in pool.members}) }"
                )
            if self.pool_matched and pool.matched_name in set(modes) | set(names):
                raise ValueError(f"{where}.pools[{i}].name: its matched arm {pool.matched_name!r} is taken")
            self._check_long_generator(pool, f"{where}.pools[{i}].long_generator")

    def _check_long_generator(self, pool: Pool, where: str) -> None:
        """The long generator is a variant of the members' label mode, not a member, trained for their combined
        kimg."""
        if pool.long_generator is None:
            return
        variants = {v.name: v for v in self.variants}
        long = variants.get(pool.long_generator)
        combined = sum(self.kimg_of(variants[m]) for m in pool.members)
        if (
            long is None
            or pool.long_generator in pool.members
            or self.mode_of(long.name) != self.mode_of(pool.members[0])
            or self.kimg_of(long) != combined
        ):
            raise ValueError(
                f"{where}: expected a variant outside the pool, of its label mode, trained for the members' "
                f"combined {combined} kimg, got {pool.long_generator!r}"
                + ("" if long is None else f" ({self.kimg_of(long)} kimg)")
            )

    def mode_of(self, name: str) -> str:
        """The label mode of a variant or pool (pools take their members')."""
        pools = {p.name: p.members[0] for p in self.pools}
        variant = next(v for v in self.variants if v.name == pools.get(name, name))
        return variant.labels or self.labels


def _pool(data: Any, where: str) -> Pool:
    if (
        not isinstance(data, dict)
        or not {"name", "members"} <= set(data) <= {"name", "members", "long_generator"}
        or not isinstance(data["name"], str)
        or not isinstance(data["members"], (list, tuple))
        or not all(isinstance(m, str) for m in data["members"])
        or not isinstance(data.get("long_generator"), (str, type(None)))
    ):
        raise ValueError(
            f"{where}: expected {{'name': str, 'members': [variant names], 'long_generator': variant name "
            f"(optional)}}, got {data!r}"
        )
    return Pool(data["name"], tuple(data["members"]), data.get("long_generator"))


def _variant(data: Any, where: str) -> Variant:
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise ValueError(f"{where}: expected {{'name': str, 'clinical_weight': float, 'train_args': [str]}}")
    unknown = set(data) - {
        "name",
        "clinical_weight",
        "train_args",
        "labels",
        "seed",
        "kimg",
        "dp_judge_epsilon",
        "synth_snapshots",
    }
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}")
    labels, seed = data.get("labels"), data.get("seed")
    if labels is not None and labels not in LABEL_MODES:
        raise ValueError(f"{where}.labels: expected one of {list(LABEL_MODES)}, got {labels!r}")
    if seed is not None and not isinstance(seed, int):
        raise ValueError(f"{where}.seed: expected an integer, got {seed!r}")
    kimg, snapshots = data.get("kimg"), data.get("synth_snapshots")
    for key, value in (("kimg", kimg), ("synth_snapshots", snapshots)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{where}.{key}: expected an integer >= 1, got {value!r}")
    epsilon = data.get("dp_judge_epsilon")
    if epsilon is not None and (isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or epsilon <= 0):
        raise ValueError(f"{where}.dp_judge_epsilon: expected a positive epsilon or null, got {epsilon!r}")
    train_args = tuple(data.get("train_args", ()))
    if epsilon is not None and "--dp=1" not in train_args:
        raise ValueError(
            f"{where}.dp_judge_epsilon: only a --dp=1 variant has a DP judge (train_args {list(train_args)})"
        )
    return Variant(
        data["name"],
        float(data.get("clinical_weight", 0.0)),
        train_args,
        labels,
        seed,
        kimg,
        None if epsilon is None else float(epsilon),
        snapshots,
    )


def load_config(path: str | None, overrides: dict[str, Any]) -> ExperimentConfig:
    """A JSON config file (or the defaults) with command-line overrides applied."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise dnnlib.UserError(f"--config={path}: not a readable JSON file ({exc})") from exc
        if not isinstance(data, dict):
            raise dnnlib.UserError(f"--config={path}: expected a JSON object")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return ExperimentConfig.from_dict(data, where=path or "options")
    except (TypeError, ValueError) as exc:
        raise dnnlib.UserError(str(exc)) from exc


def panel_members(config: ExperimentConfig) -> list[PanelMember]:
    """The evaluator panel's members, parsed from the config."""
    return [PanelMember.parse(text) for text in config.panel]


def downstream_options(config: ExperimentConfig) -> DownstreamOptions:
    """Every downstream arm's classifier: the experiment's architecture and pixel normalisation (the judges' too)."""
    return DownstreamOptions(
        arch=config.classifier_arch,
        epochs=config.downstream_epochs,
        patience=config.downstream_patience,
        seed=config.seed,
        n_resamples=config.n_resamples,
        input_norm=config.classifier_input_norm,
    )


def classifier_options(
    config: ExperimentConfig, resolution: int, seed: int, member: PanelMember | None = None
) -> TrainOptions:
    """A judge's training (the clinical loss's, the independent one): the experiment's protocol, with the
    experiment's architecture and normalisation or `member`'s."""
    return TrainOptions(
        arch=config.classifier_arch if member is None else member.arch,
        resolution=resolution,
        epochs=config.classifier_epochs,
        patience=config.classifier_patience,
        seed=seed,
        input_norm=config.classifier_input_norm if member is None else member.input_norm,
    )

"""`LoopPlugins`: the one value that carries every plug-in into the training loop, role by role.

    discriminator_update  update rule of the D phases (`training.phase_update.PhaseUpdate`); None = GradientStep
    generator_update      update rule of the G phases; None = GradientStep
    generator_terms       extra generator losses added to Gmain (`training.loss.GeneratorTerm`)
    fake_labels           n -> [n, c_dim] NumPy labels of the generated images; None = labels of training images
    real_sampling         dataset -> `training.data_path.IndexSampler`: the plug-in draws the real batches
                          instead of the shuffled stream (DP-SGD's Poisson sampling); None = shuffled stream
    others                {key: Plugin} plug-ins with hooks only (DP's privacy account, its budget, its log line)

Updates, terms and `others` are `training.plugins.Plugin`s: the loop consults their hooks (checkpoint state,
snapshot metadata, tick report, stop) under the keys 'discriminator_update', 'generator_update',
'generator_term/<name>' and the keys of `others`. One object in two roles (the authors' scheme updates G and D
alike) is consulted once, under its first key. `fake_labels` and `real_sampling` are plain callables.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from training.data_path import IndexSampler
from training.loss import GeneratorTerm
from training.phase_update import PhaseUpdate
from training.plugins import Plugin, UnclaimedState


class FakeLabels(Protocol):
    def __call__(self, n: int) -> np.ndarray:
        """[n, c_dim] float32 labels for n generated images."""
        ...


class RealSampling(Protocol):
    def __call__(self, dataset: Any) -> IndexSampler:
        """The sampler that draws each iteration's real images from `dataset`."""
        ...


SINGLE_ROLES = ("discriminator_update", "generator_update", "fake_labels", "real_sampling")


@dataclasses.dataclass(frozen=True)
class LoopPlugins:
    """The plug-ins of one run (see the module docstring); `LoopPlugins()` is the plain StyleGAN2-ADA loop."""

    discriminator_update: PhaseUpdate | None = None
    generator_update: PhaseUpdate | None = None
    generator_terms: tuple[GeneratorTerm, ...] = ()
    fake_labels: FakeLabels | None = None
    real_sampling: RealSampling | None = None
    others: Mapping[str, Plugin] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "generator_terms", tuple(self.generator_terms))
        object.__setattr__(self, "others", dict(self.others))
        for key, plugin in self._candidates():
            if plugin is not None and not isinstance(plugin, Plugin):
                raise TypeError(f"plug-in {key!r} ({type(plugin).__name__}) must derive from training.plugins.Plugin")

    def _candidates(self) -> list[tuple[str, Any]]:
        candidates = [("discriminator_update", self.discriminator_update), ("generator_update", self.generator_update)]
        candidates += [(f"generator_term/{term.name}", term) for term in self.generator_terms]
        return candidates + list(self.others.items())

    def named(self) -> dict[str, Plugin]:
        """{key: plug-in} of every plug-in the loop consults, each object once; refuses two terms with one name."""
        named: dict[str, Plugin] = {}
        for key, plugin in self._candidates():
            if plugin is None or any(plugin is seen for seen in named.values()):
                continue
            if key in named:
                raise ValueError(f"two plug-ins have the key {key!r}; each generator term needs its own name")
            named[key] = plugin
        return named

    @staticmethod
    def combine(parts: list[LoopPlugins]) -> LoopPlugins:
        """One run's plug-ins from several sources: terms and `others` joined, each single role from one source."""
        roles: dict[str, Any] = {}
        for part in parts:
            for role in SINGLE_ROLES:
                value = getattr(part, role)
                if value is not None and role in roles:
                    raise ValueError(f"two plug-ins both set the training loop's {role}; they cannot be combined")
                if value is not None:
                    roles[role] = value
        others: dict[str, Plugin] = {}
        for part in parts:
            clash = set(others) & set(part.others)
            if clash:
                raise ValueError(f"two plug-ins both use the key(s) {sorted(clash)}")
            others.update(part.others)
        terms = tuple(term for part in parts for term in part.generator_terms)
        return LoopPlugins(**roles, generator_terms=terms, others=others)


def plugin_states(plugins: dict[str, Plugin]) -> dict[str, dict]:
    """{key: state_dict()} of the plug-ins that keep state (stored in the checkpoint)."""
    states = {key: plugin.state_dict() for key, plugin in plugins.items()}
    return {key: state for key, state in states.items() if state is not None}


def restore_plugin_states(states: dict[str, Any], path: str, plugins: dict[str, Plugin]) -> None:
    """Give each plug-in its checkpointed state; refuse a checkpoint whose plug-in state would be dropped."""
    for key in states:
        if key not in plugins:
            raise ValueError(
                f"{path}: the checkpoint holds the state of plug-in {key!r}, which this run lacks; "
                f"resume with the run's own options"
            )
    for key, plugin in plugins.items():
        try:
            plugin.load_state_dict(states.get(key))
        except UnclaimedState:
            raise ValueError(
                f"{path}: the checkpoint holds the state of plug-in {key!r}, which this run cannot "
                f"restore; resume with the run's own options"
            ) from None


def plugin_metadata(plugins: dict[str, Plugin]) -> dict:
    """The merged `snapshot_metadata()` of the plug-ins."""
    merged: dict = {}
    for plugin in plugins.values():
        merged.update(plugin.snapshot_metadata())
    return merged


def plugin_tick_report(plugins: dict[str, Plugin]) -> str:
    """' ' + the non-empty `report_tick()` texts, for the end of the status line ('' when there are none)."""
    texts = [plugin.report_tick() for plugin in plugins.values()]
    return "".join(f" {text}" for text in texts if text)


def plugin_stop_reason(plugins: dict[str, Plugin]) -> str:
    """The first non-empty `stop_reason()`, or ''."""
    return next((reason for reason in (plugin.stop_reason() for plugin in plugins.values()) if reason), "")

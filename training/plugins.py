"""The plug-in protocol: what the training loop asks of every plug-in, each method optional.

Plug-ins are the discriminator update, the generator update (`training.phase_update.PhaseUpdate`) and the generator
terms (`training.loss.GeneratorTerm`). Besides its main call, any of them may define:

    state_dict() -> dict                 plain data kept in the checkpoint under the plug-in's key
    load_state_dict(state: dict | None)  given that state on resume (None when the checkpoint has none for the key,
                                         so the plug-in decides whether it can start fresh)
    snapshot_metadata() -> dict          merged into every network snapshot's metadata
    report_tick() -> str                 called once per tick, before the stats are collected; joins the status line
    index_sampler(dataset) -> training.data_path.IndexSampler
                                         draw the real batches instead of the shuffled stream (at most one plug-in)

Keys: 'discriminator_update', 'generator_update', 'generator_term/<name>'. One object serving two roles (the
authors' scheme updates G and D alike) is consulted once, under its first key.
"""

from __future__ import annotations

from typing import Any, Sequence

from training.data_path import IndexSampler


def named_plugins(discriminator_update: Any = None, generator_update: Any = None,
                  generator_terms: Sequence[Any] = ()) -> dict[str, Any]:
    """{key: plug-in} of the given plug-ins, each object once; refuses two generator terms with one name."""
    named: dict[str, Any] = {}
    candidates = [("discriminator_update", discriminator_update), ("generator_update", generator_update)]
    candidates += [(f"generator_term/{term.name}", term) for term in generator_terms]
    for key, plugin in candidates:
        if plugin is None or any(plugin is seen for seen in named.values()):
            continue
        if key in named:
            raise ValueError(f"two generator terms are named {key.split('/', 1)[1]!r}; each needs its own name")
        named[key] = plugin
    return named


def plugin_states(plugins: dict[str, Any]) -> dict[str, dict]:
    """{key: state_dict()} of the plug-ins that keep state (stored in the checkpoint)."""
    return {key: plugin.state_dict() for key, plugin in plugins.items() if hasattr(plugin, "state_dict")}


def restore_plugin_states(states: dict[str, Any], path: str, plugins: dict[str, Any]) -> None:
    """Give each stateful plug-in its checkpointed state; refuse a checkpoint whose plug-in state would be dropped."""
    for key, state in states.items():
        if not hasattr(plugins.get(key), "load_state_dict"):
            raise ValueError(f"{path}: the checkpoint holds the state of plug-in {key!r}, which this run "
                             f"{'cannot restore' if key in plugins else 'lacks'}; resume with the run's own options")
    for key, plugin in plugins.items():
        if hasattr(plugin, "load_state_dict"):
            plugin.load_state_dict(states.get(key))


def plugin_metadata(plugins: dict[str, Any]) -> dict:
    """The merged `snapshot_metadata()` of the plug-ins that define it."""
    merged: dict = {}
    for plugin in plugins.values():
        if hasattr(plugin, "snapshot_metadata"):
            merged.update(plugin.snapshot_metadata())
    return merged


def plugin_tick_report(plugins: dict[str, Any]) -> str:
    """' ' + the non-empty `report_tick()` texts, for the end of the status line ('' when there are none)."""
    texts = [plugin.report_tick() for plugin in plugins.values() if hasattr(plugin, "report_tick")]
    return "".join(f" {text}" for text in texts if text)


def index_sampler(plugins: dict[str, Any], dataset: Any) -> IndexSampler | None:
    """The sampler a plug-in wants the real batches drawn with, or None for the shuffled stream."""
    samplers = {key: plugin.index_sampler(dataset) for key, plugin in plugins.items()
                if hasattr(plugin, "index_sampler")}
    if len(samplers) > 1:
        raise ValueError(f"plug-ins {sorted(samplers)} each want to draw the real batches; at most one may")
    return next(iter(samplers.values()), None)

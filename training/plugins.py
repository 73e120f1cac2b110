"""The plug-in base class: what the training loop may ask of any plug-in besides its role.

A plug-in is an object the loop calls in one role (an update rule, a generator term, ...; see
`training.loop_plugins.LoopPlugins`, the one value that carries them into the loop). Every plug-in derives from
`Plugin`, whose hooks do nothing by default; a plug-in overrides the ones it needs:

    state_dict() -> dict | None          plain data kept in the checkpoint under the plug-in's key (None: nothing)
    load_state_dict(state: dict | None)  given that state on resume (None when the checkpoint has none for the key,
                                         so the plug-in decides whether it can start fresh); the default refuses
                                         a state, since a plug-in that keeps none cannot restore one
    snapshot_metadata() -> dict          merged into every network snapshot's metadata
    report_tick() -> str                 called once per tick, before the stats are collected; joins the status line
    stop_reason() -> str                 asked at every tick; a non-empty reason ends the run cleanly (final
                                         snapshot and checkpoint), e.g. DP's privacy budget
"""

from __future__ import annotations


class UnclaimedState(ValueError):
    """A checkpoint holds state for a plug-in that keeps none."""


class Plugin:
    """Base of every training plug-in; each hook is optional (the defaults do nothing)."""

    def state_dict(self) -> dict | None:
        """Plain data to checkpoint, or None when the plug-in keeps no state."""
        return None

    def load_state_dict(self, state: dict | None) -> None:
        """Continue from the checkpointed state; None when the checkpoint holds none for this plug-in."""
        if state is not None:
            raise UnclaimedState("keeps no state")

    def snapshot_metadata(self) -> dict:
        """Entries merged into every network snapshot's metadata."""
        return {}

    def report_tick(self) -> str:
        """Text appended to the tick's status line ('' for none); may `training_stats.report0` values."""
        return ""

    def stop_reason(self) -> str:
        """'' to go on, else why the run stops now (with a final snapshot and checkpoint)."""
        return ""

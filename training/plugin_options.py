"""`TrainingPlugin`: how a plug-in with command-line options joins train.py.

A training plug-in (the clinical loss, class locality, DP) is one object that declares, in its own module:

    setting       its key in the run's settings (`args.<setting>`): recorded with the run, compared on resume,
                  never passed to the training loop itself
    options       its click options (`dnnlib.cli.OptionGroup`), composed into train.py's command
    path_options  its options that name files: recorded as absolute paths, so a resumed run compares them as such
    conflicts     options of other plug-ins it cannot be combined with (`Conflict`), checked in one place
    configure(opts, args) -> run-name parts
                  its defaults and validation (ValueError naming the flag); sets args.<setting> (None when off)
                  and may adjust the core settings it changes (DP: the discriminator, augmentation, batch split)
                  and append a line to args.notes saying what it changed for the user
    build(args, device) -> LoopPlugins
                  its plug-ins for the training loop, from args.<setting> alone (`training.loop_plugins`)

`DeclaredPlugin(setting, options, configure, build, path_options, conflicts)` makes one from a module's
declarations. train.py lists the plug-ins in `PLUGINS`; nothing in training/ names one. A plug-in reads only the
parsed options and the core settings, never another plug-in's options or settings: what may not be combined is a
`Conflict`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch

from dnnlib.cli import OptionGroup
from training.loop_plugins import LoopPlugins


@dataclasses.dataclass(frozen=True)
class Conflict:
    """Options that may not all be on (given and truthy) in one run; `message` says why."""

    options: tuple[str, ...]
    message: str

    def applies(self, opts: Any) -> bool:
        return all(bool(opts.get(name)) for name in self.options)


class TrainingPlugin(Protocol):
    setting: str
    options: OptionGroup
    path_options: tuple[str, ...]
    conflicts: tuple[Conflict, ...]

    def configure(self, opts: Any, args: Any) -> list[str]:
        """Validate this plug-in's options, set args.<setting>; returns run-name parts (ValueError: bad input)."""
        ...

    def build(self, args: Any, device: torch.device) -> LoopPlugins:
        """The training loop's plug-ins from args.<setting> (empty `LoopPlugins()` when the plug-in is off)."""
        ...


@dataclasses.dataclass(frozen=True)
class DeclaredPlugin:
    """A `TrainingPlugin` from a module's declarations: its setting key, options, configure and build functions."""

    setting: str
    options: OptionGroup
    configure: Callable[[Any, Any], list[str]]
    build: Callable[[Any, torch.device], LoopPlugins]
    path_options: tuple[str, ...] = ()
    conflicts: tuple[Conflict, ...] = ()


def check_conflicts(opts: Any, plugins: Sequence[TrainingPlugin]) -> None:
    """Raise ValueError with the message of the first declared conflict the options run into."""
    for plugin in plugins:
        for conflict in plugin.conflicts:
            if conflict.applies(opts):
                raise ValueError(conflict.message)

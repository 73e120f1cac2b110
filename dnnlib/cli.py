"""Click options declared once: a group decorates a command and knows its own parameter names.

A plug-in declares its command-line options in its own module as an `OptionGroup`; the script composes the
groups (`@group` on the command) and the plug-in's validation asks the group which of its options were given,
so no list of names is kept by hand beside the declarations.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import click

from dnnlib.util import MAX_SEED


class OptionGroup:
    """Click option decorators applied in the order written (the first one is listed first in --help)."""

    def __init__(self, *options: Callable[[Callable], Callable]):
        self.options = options

    def __call__(self, command: Callable) -> Callable:
        for option in reversed(self.options):
            command = option(command)
        return command

    @property
    def names(self) -> list[str]:
        """The parameter names (e.g. 'dp_secure_rng'), in declaration order."""

        def probe() -> None:
            pass

        params: list[click.Parameter] = self(probe).__click_params__
        return [param.name for param in reversed(params)]

    def given(self, opts: Mapping[str, Any], exclude: tuple[str, ...] = ()) -> list[str]:
        """The flags (e.g. '--dp-secure-rng') of the options whose value is set (not None) in `opts`."""
        return [
            "--" + name.replace("_", "-") for name in self.names if name not in exclude and opts.get(name) is not None
        ]


def parse_range(text: str) -> list[int]:
    """'1,2,5' or '0-35' (inclusive) or a mix ('0-3,7') -> list of seeds, each in 0..MAX_SEED."""
    values = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise click.BadParameter(f"{part!r} is not a seed or a range like 0-35", param_hint="--seeds")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if hi < lo:
            raise click.BadParameter(f"range {part!r} ends before it starts", param_hint="--seeds")
        if hi > MAX_SEED:  # checked before expanding: a typo must not build billions of seeds
            raise click.BadParameter(f"seed {hi} is out of range: seeds are 0..{MAX_SEED}", param_hint="--seeds")
        values += range(lo, hi + 1)
    return values

"""Check where a tool will write before it does any work: one `Error:` line instead of a traceback at the end.

A tool that finds out only when it saves (after training a classifier, after computing a metric) has wasted the
work; every command-line tool therefore checks its output paths first, through `check_output_path` or the click
type `OUTPUT_PATH`. Permission bits alone cannot answer "can I write here": root ignores them, and read-only
mounts or sysfs refuse root too. So the check creates (and removes) a probe file in the folder that will hold the
output, which is the one test that every file system answers truthfully.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import click

from .util import UserError


def writable_folder(path: str | os.PathLike) -> str:
    """The existing folder in which writing `path` creates the first new entry: `path` itself when it is a
    folder, else the nearest existing ancestor (the folders between are made by the tool)."""
    path = os.path.abspath(os.fspath(path))
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    while not os.path.lexists(folder):
        folder = os.path.dirname(folder)
    return folder


def check_output_path(path: str | os.PathLike, flag: str, needed_bytes: int = 0) -> None:
    """Raise UserError naming `flag` unless `path` (a file or folder to be written) can be created there and the
    file system has `needed_bytes` free. Leaves nothing behind."""
    text = f"{flag}={os.fspath(path)}"
    folder = writable_folder(path)
    if not os.path.isdir(folder):
        raise UserError(f"{text}: {folder} is a file, not a folder; expected a path in a folder you can write")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".spinegan-write-probe-")
    except OSError as exc:
        raise UserError(
            f"{text}: cannot write in {folder} ({exc.strerror or exc}); expected a folder you can write"
        ) from None
    os.close(fd)
    os.unlink(probe)
    check_free_space(path, flag, needed_bytes)


def check_free_space(path: str | os.PathLike, flag: str, needed_bytes: int) -> None:
    """Raise UserError unless the file system that will hold `path` has `needed_bytes` free."""
    if needed_bytes <= 0:
        return
    free = shutil.disk_usage(writable_folder(path)).free
    if free < needed_bytes:
        raise UserError(
            f"{flag}={os.fspath(path)}: {format_bytes(free)} free on its file system, "
            f"{format_bytes(needed_bytes)} needed for the outputs"
        )


def format_bytes(count: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


class OutputPath(click.Path):
    """click.Path for an output (file or folder), also checked where it will be written as the command line is
    parsed, before any work. click.Path's own rules (dir_okay, file_okay) stay usage errors (exit 2); other
    existence rules stay with the tool (e.g. 'must be a new folder')."""

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> str:
        value = os.fspath(super().convert(value, param, ctx))
        check_output_path(value, param.opts[0] if param is not None and param.opts else "path")
        return value


OUTPUT_PATH = OutputPath()


def replace_folder(new: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Move the finished folder `new` (beside `dest`) to `dest`, replacing a folder already there: the old one is
    renamed aside first and deleted only once the new one is in place, so `dest` is never half old, half new."""
    dest = os.path.abspath(os.fspath(dest))
    if not (os.path.isdir(dest) and os.listdir(dest)):
        os.replace(new, dest)  # absent or empty: one atomic rename
        return
    old = tempfile.mkdtemp(dir=os.path.dirname(dest), prefix=f".{os.path.basename(dest)}.old-", suffix=".tmp")
    os.replace(dest, old)  # over the empty placeholder
    os.replace(new, dest)
    shutil.rmtree(old, ignore_errors=True)

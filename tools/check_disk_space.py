"""Refuse to start the install when the disk cannot hold it, with one line that says how much is missing.

`make` runs this before it creates .venv: the CUDA build of torch and its libraries take about 6.4 GB in the venv,
and pip needs room to unpack wheels beside it. Measured on 2026-12-08 (free space sampled every 2 s): the install
took at most 6.6 GiB and `make test` after it 1.5 GiB more, 7.8 GiB in all; the Makefile asks for 10. Without the
check a full disk ends the install with pip's "OSError: [Errno 28] No space left on device" after minutes of work
(seen in CI on 2026-12-07).
Run as `python tools/check_disk_space.py PATH GIB`; exits 0 when PATH's file system has GIB GiB free, else 1.
Standard library only: it runs before the venv exists.
"""

from __future__ import annotations

import shutil
import sys

GIB = 1024**3


def free_gib(path: str) -> float:
    """Free space on the file system that holds `path`, in GiB (what an unprivileged process may use)."""
    return shutil.disk_usage(path).free / GIB


def check(path: str, needed_gib: float) -> str | None:
    """None when `path` has `needed_gib` free, else the one-line reason."""
    free = free_gib(path)
    if free >= needed_gib:
        return None
    return (
        f"not enough disk space to install into {path}: {free:.1f} GiB free, about {needed_gib:g} GiB needed "
        "(torch with its CUDA libraries); free some space and run the command again"
    )


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python tools/check_disk_space.py PATH GIB", file=sys.stderr)
        return 2
    path, needed = argv
    try:
        needed_gib = float(needed)
    except ValueError:
        print(f"GIB: expected a number of GiB, got {needed!r}", file=sys.stderr)
        return 2
    try:
        reason = check(path, needed_gib)
    except OSError as error:  # a missing folder or one we may not read: say which, no traceback
        print(f"PATH: cannot read the free space of {path!r} ({error.strerror})", file=sys.stderr)
        return 2
    if reason is not None:
        print(reason, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Ctrl-C (SIGINT) and SIGTERM during training: finish the iteration, write a checkpoint, say how to continue.

The first signal only asks the loop to stop: the loop checks `stop_requested` before each iteration (a world of
several processes only right after a tick, where all ranks agree through one small all-gather), writes the
checkpoint that iteration would start from (a resume from it is the uninterrupted run, bit for bit: it is taken
between iterations, after any tick) and raises `Interrupted`. train.py logs how to continue and exits 128 + the
signal number (130 / 143), as a shell expects
of a process a signal ended. A second signal stops at once, the default way (the last checkpoint stays).

The request is kept in this module because a signal handler is process-wide state by nature.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

from training import checkpoint as ckpt
from training import distributed as dist_utils

SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_CODES = tuple(128 + signum for signum in SIGNALS)  # 130, 143: how a process a signal stopped exits
_requested: list[int] = []  # the signal numbers received while `stop_on_signals` is active


class Interrupted(Exception):
    """The loop stopped at a signal after writing its checkpoint at `cur_nimg` images."""

    def __init__(self, signum: int, cur_nimg: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name} at {cur_nimg / 1000:g} kimg")
        self.signum = signum
        self.cur_nimg = cur_nimg

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _handle(signum: int, frame: object) -> None:
    if _requested:  # the second signal: stop now, as if no handler were installed
        signal.signal(signum, signal.SIG_DFL)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        os.kill(os.getpid(), signum)
        return
    _requested.append(signum)
    print(
        f"\n{signal.Signals(signum).name} received: stopping after this iteration with a checkpoint "
        f"(send it again to stop at once)",
        file=sys.stderr,
        flush=True,
    )


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into a stop request for the duration (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _handle) for signum in SIGNALS}
    _requested.clear()
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _requested.clear()


def stop_requested(after_tick: bool, world: int) -> int | None:
    """The signal that asked this run to stop, or None. With several processes the answer changes only at a tick,
    and is the same on every rank (each must write its part of the checkpoint at the same iteration)."""
    if world == 1:
        return _requested[0] if _requested else None
    if not after_tick:
        return None
    return (
        max((signum or 0 for signum in dist_utils.all_gather_object(_requested[0] if _requested else None)), default=0)
        or None
    )


def continue_hint(stop: Interrupted, run_dir: str) -> str:
    """train.py's last log line after a signal: where the run stopped and the command that continues it."""
    outdir = os.path.dirname(os.path.normpath(run_dir)) or "."
    return (
        f"\ninterrupted at {stop.cur_nimg / 1000:g} kimg; continue with: python train.py --outdir {outdir} "
        f"--resume={os.path.join(run_dir, ckpt.FILE_NAME)}"
    )

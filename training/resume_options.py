"""The options of a continued run (`train.py --resume=<run>/checkpoint.pt`).

A continued run is the run it continues: the command-line options that run was started with are stored with it
(`cli_options` in its training options and checkpoint) and fill every option not given now. Options that only say
how long, how often or on what hardware (`CHANGEABLE`) may be given anew and are listed in the log; any other
option given with a different value would make a different run and is refused, one line per option.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable

# Options that may differ from the continued run, and the training-loop settings each one decides.
CHANGEABLE: dict[str, tuple[str, ...]] = {
    "kimg": ("total_kimg",),
    "snap": ("image_snapshot_ticks", "network_snapshot_ticks"),
    "metrics": ("metrics",),
    "metrics_classifier": ("metric_kwargs",),
    "kimg_per_tick": ("kimg_per_tick",),
    "workers": ("data_loader_kwargs",),
    "gpus": ("num_gpus",),
    "nobench": ("cudnn_benchmark",),
    "allow_tf32": ("allow_tf32",),
    "cuda_graphs": ("cuda_graphs",),
}
NOT_RECORDED = ("resume", "outdir", "dry_run")  # where a run starts from and writes to is not part of the run
# Training-loop settings that are not part of what a run is: where it writes, what it resumed from, its records.
BOOKKEEPING = ("resume_checkpoint", "resume_pkl", "run_dir", "cli_options", "notes")


class ResumeMismatch(ValueError):
    """Options given now that would make the continued run a different one; one line per option."""


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def recorded_options(opts: dict, path_options: Iterable[str]) -> dict:
    """The command-line options to store with a run: those naming files (`path_options`) made absolute, --resume
    and --outdir left out."""
    recorded = {k: v for k, v in opts.items() if k not in NOT_RECORDED}
    for name in path_options:
        if recorded.get(name) is not None:
            recorded[name] = os.path.abspath(recorded[name])
    return recorded


def merge_options(
    opts: dict, explicit: Iterable[str], recorded: dict, path: str, path_options: Iterable[str]
) -> tuple[dict, list[str]]:
    """The continued run's options: `recorded` (the run's own), overridden by the changeable options given now.

    `explicit`: names of the options given on the command line; `path_options`: those naming files. Returns
    (options, log lines naming the changes); raises ResumeMismatch listing every other option given with a value
    that differs from the run's.
    """
    given = {name: opts[name] for name in explicit if name in opts and name not in NOT_RECORDED}
    ours = recorded_options(given, path_options)
    merged = dict(opts)
    merged.update({k: v for k, v in recorded.items() if k not in given})
    changed, refused = [], []
    for name, value in sorted(ours.items()):
        before = recorded.get(name)
        if value == before:
            continue
        line = f"  {flag(name)}: the run has {before!r}, now {value!r}"
        (changed if name in CHANGEABLE else refused).append(line)
    if refused:
        raise ResumeMismatch(
            "\n".join(
                [
                    f"--resume={path} continues a run whose options differ from those given now:",
                    *refused,
                    "Leave them out to continue with the run's own options (only "
                    f"{', '.join(flag(n) for n in CHANGEABLE)} may change), or pass a network snapshot (.pkl) "
                    "to --resume to start a new run from its weights.",
                ]
            )
        )
    notes = [
        f"Continuing {path} with the run's own options" + (", changed:" if changed else "; none changed"),
        *changed,
    ]
    return merged, notes


def comparable(options: dict) -> dict:
    """Training options with the dataset path made absolute, so that a run given it relative compares equal."""
    options = copy.deepcopy(options)
    data = options.get("training_set_kwargs") or {}
    if "path" in data:
        data["path"] = os.path.abspath(data["path"])
    return options


def setting_differences(saved: dict, ours: dict) -> list[str]:
    """One line per training-loop setting (other than the changeable ones) that differs between two runs."""
    saved, ours = comparable(saved), comparable(ours)
    free = {key for keys in CHANGEABLE.values() for key in keys} | set(BOOKKEEPING)
    return [
        f"  {key}: the run has {saved.get(key)!r}, now {ours.get(key)!r}"
        for key in sorted(set(saved) | set(ours))
        if key not in free and saved.get(key) != ours.get(key)
    ]


def describe_refusal(path: str, lines: list[str]) -> str:
    return "\n".join(
        [
            f"--resume={path}: these settings differ from the run being continued:",
            *lines,
            "Continue with the run's own options, or pass a network snapshot (.pkl) to --resume to "
            "start a new run from its weights.",
        ]
    )

"""training.checkpoint: a resume's options are read once per checkpoint file version."""

import os

import torch

from training import checkpoint as ckpt


def write(path, options):
    net = torch.nn.Linear(2, 1)
    ckpt.save_checkpoint(
        path,
        nets=dict(G=net),
        optimizers={},
        pl_mean=0.0,
        progress={},
        process_states=[],
        training_set_kwargs={},
        options=options,
    )


def test_options_are_read_once_per_file_version(tmp_path, monkeypatch):
    path = str(tmp_path / "checkpoint.pt")
    write(path, dict(kimg=5))
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a[0]) or real_load(*a, **k))
    assert ckpt.is_checkpoint(path)
    options = ckpt.checkpoint_options(path)
    options["kimg"] = 99  # callers get their own copy
    assert ckpt.checkpoint_options(path) == dict(kimg=5) and len(loads) == 1
    write(path, dict(kimg=6))
    os.utime(path, ns=(1, 1))  # a new version even within the clock's resolution
    assert ckpt.checkpoint_options(path) == dict(kimg=6) and len(loads) == 2
    other = tmp_path / "notes.txt"
    other.write_text("not a checkpoint")
    assert not ckpt.is_checkpoint(str(other)) and ckpt.checkpoint_options(str(other)) is None

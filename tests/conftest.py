"""Makes tests/ importable from every test folder, for the shared helpers in tests/bad_inputs.py (pytest's default
import mode puts a conftest's folder on sys.path), and the fixtures several test folders share."""

import os

import pytest

import torch_utils  # noqa: F401  (MKL's reproducible mode, before any test's first matrix product)

# Reduced precision on the CPU depends on the CPU (torch_utils.precision): the suite runs in fp32 on every machine
# unless the caller sets the variable; the bf16 tests force it on with the `cpu_bf16` fixture. Subprocesses inherit it.
os.environ.setdefault("SPINEGAN_CPU_BF16", "off")


def _cpu_bf16_set(monkeypatch, value: str):
    from torch_utils import precision

    monkeypatch.setenv(precision.BF16_ENV_VAR, value)
    precision.cpu_bf16_reason.cache_clear()
    yield
    monkeypatch.undo()
    precision.cpu_bf16_reason.cache_clear()


@pytest.fixture
def cpu_bf16(monkeypatch):
    """Blocks marked for reduced precision train in bf16 on this CPU, whether or not it has native bf16."""
    yield from _cpu_bf16_set(monkeypatch, "on")


@pytest.fixture
def cpu_fp32(monkeypatch):
    """The CPU computes everything in fp32, as one without native bf16 (whatever SPINEGAN_CPU_BF16 says)."""
    yield from _cpu_bf16_set(monkeypatch, "off")


@pytest.fixture
def captured(monkeypatch):
    """Replace train.py's launch with a recorder: option handling is tested without training."""
    import train

    calls = []
    monkeypatch.setattr(train, "launch", lambda args: calls.append(args))
    return calls

"""Makes tests/ importable from every test folder, for the shared helpers in tests/bad_inputs.py (pytest's default
import mode puts a conftest's folder on sys.path), and the fixtures several test folders share."""

import pytest


@pytest.fixture
def captured(monkeypatch):
    """Replace train.py's launch with a recorder: option handling is tested without training."""
    import train
    calls = []
    monkeypatch.setattr(train, "launch", lambda args: calls.append(args))
    return calls

"""Fixtures for the metrics tests; the helpers they use live in metrics_helpers.py (a unique module name, so
that spawned worker processes import them without clashing with other folders' conftest modules)."""

import pytest
from metrics_helpers import OfficialStyle, PoolStyle, save_torchscript, write_dataset


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """Every test gets an empty dnnlib cache (no download can hit the real one)."""
    path = tmp_path / "dnnlib-cache"
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(path))
    return path


@pytest.fixture
def dataset(tmp_path) -> str:
    return write_dataset(str(tmp_path / "data"))


@pytest.fixture
def pool_detector_file(tmp_path) -> str:
    return save_torchscript(PoolStyle(), str(tmp_path / "pool.pt"))


@pytest.fixture
def official_detector_file(tmp_path) -> str:
    return save_torchscript(OfficialStyle(), str(tmp_path / "official.pt"))

"""tools/screenshot_report.py renders a local HTML page in headless Chromium (skipped without chromium, except
under `make test`, which installs it and sets SPINEGAN_REQUIRE_CHROMIUM=1 so that a missing browser fails)."""

import importlib.util
import os
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

_SPEC = importlib.util.spec_from_file_location(
    "screenshot_report", Path(__file__).resolve().parents[2] / "tools" / "screenshot_report.py"
)
screenshot_report = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(screenshot_report)

CHROMIUM_REQUIRED = os.environ.get("SPINEGAN_REQUIRE_CHROMIUM") == "1"
needs_chromium = pytest.mark.skipif(
    screenshot_report.find_chromium() is None and not CHROMIUM_REQUIRED, reason="chromium not installed"
)


@needs_chromium
def test_screenshot_shows_the_page(tmp_path):
    PIL.Image.new("RGB", (50, 50), (0, 0, 255)).save(tmp_path / "blue.png")
    page = tmp_path / "index.html"
    page.write_text(
        "<html><body style='margin:0;background:#fff'>"
        "<div style='width:100px;height:100px;background:#f00'></div>"
        "<img src='blue.png' style='display:block;width:100px;height:100px'></body></html>"
    )
    out = screenshot_report.screenshot(page, tmp_path / "shot.png", width=300, height=300)
    pixels = np.asarray(PIL.Image.open(out).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (300, 300)
    assert (np.abs(pixels[50, 50] - [255, 0, 0]) < 10).all()  # the red box
    assert (np.abs(pixels[150, 50] - [0, 0, 255]) < 10).all()  # the local image loaded
    assert (np.abs(pixels[50, 250] - [255, 255, 255]) < 10).all()  # the background


@needs_chromium
def test_missing_report_is_a_clear_error(tmp_path):
    with pytest.raises(Exception, match="no such report"):
        screenshot_report.screenshot(tmp_path / "missing.html", tmp_path / "x.png")

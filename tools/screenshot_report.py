"""Render an HTML report in headless Chromium and save a screenshot (docs/report_screenshot.png by default).

    python tools/screenshot_report.py runs/demo/report/index.html [--out docs/report_screenshot.png]

Checks that the static report renders without a network (images are local files) and gives the README a picture.
Needs Debian's chromium (`apt-get install -y chromium`; `make test` installs it via tools/ensure_chromium.sh); a
throw-away profile folder keeps it from touching ~.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import click

import dnnlib

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


def find_chromium() -> str | None:
    """Path of a Chromium executable, or None."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(
    html_path: str | Path,
    out: str | Path,
    width: int = 1200,
    height: int = 2400,
    timeout: float = 120,
    chromium: str | None = None,
) -> Path:
    """Render `html_path` at width x height and write the PNG to `out` (atomically: rendered beside, renamed)."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise click.ClickException("chromium not found; install it with `apt-get install -y chromium`")
    html_path = Path(html_path).resolve()
    if not html_path.is_file():
        raise click.ClickException(f"{html_path}: no such report")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        tmp_png = Path(profile) / "shot.png"
        cmd = [
            chromium,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={tmp_png}",
            f"--window-size={width},{height}",
            html_path.as_uri(),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0 or not tmp_png.is_file():
            raise click.ClickException(f"chromium failed ({result.returncode}): {result.stderr[-2000:]}")
        shutil.move(str(tmp_png), str(out) + ".tmp")
        os.replace(str(out) + ".tmp", out)
    return out


@click.command()
@click.argument("html_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", default="docs/report_screenshot.png", show_default=True, type=dnnlib.OutputPath(dir_okay=False))
@click.option("--width", type=click.IntRange(min=200), default=1200, show_default=True)
@click.option("--height", type=click.IntRange(min=200), default=2400, show_default=True)
def main(html_path: str, out: str, width: int, height: int) -> None:
    """Screenshot a SpineGAN HTML report with headless Chromium."""
    click.echo(f"Screenshot: {screenshot(html_path, out, width, height)}")


if __name__ == "__main__":
    main()  # pylint: disable=no-value-for-parameter

#!/usr/bin/env bash
# Make sure headless Chromium exists, so the report's browser test (tests/tools/test_screenshot_report.py) runs
# wherever the suite runs instead of skipping. Quick when Chromium is already there; otherwise installs Debian's
# package. Fails loudly (exit 1, one line saying why) when it cannot.
set -euo pipefail

for name in chromium chromium-browser google-chrome; do
    if command -v "$name" >/dev/null 2>&1; then
        exit 0
    fi
done

if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: chromium not found and no apt-get to install it; install Chromium (Debian: apt-get install chromium)" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo -n"  # non-interactive: a password prompt would hang CI
fi
echo "Installing chromium from the system's packages (needed by the report's browser test) ..."
export DEBIAN_FRONTEND=noninteractive
# A fresh container often has empty or stale package lists: refresh them when the first try fails.
if ! $sudo apt-get install -y -qq chromium >/dev/null; then
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq chromium >/dev/null
fi
if ! command -v chromium >/dev/null 2>&1; then
    echo "error: apt-get install chromium finished but no chromium executable is on PATH" >&2
    exit 1
fi
echo "Installed $(chromium --version)"

#!/usr/bin/env bash
# Installs headless Chromium for the report's browser test (crates/persona-pipelines/tests/
# report.rs opens the HTML report in it, reads the rendered DOM and screenshots the page):
# Debian's `chromium` package, only when `chromium` is not already on the PATH.
#
#   bash scripts/setup_browser.sh
#
# Needs root (or sudo) and a Debian or Ubuntu apt. Without Chromium the browser test skips
# with a message, except when CI=true: there a missing browser fails the test.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  echo "chromium: $(command -v chromium) is installed"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: chromium is not installed and there is no apt-get here; install Chromium so that \`chromium\` is on the PATH" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "error: installing chromium needs root: run as root, or install sudo" >&2
    exit 1
  fi
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update
$sudo apt-get install -y chromium
echo "chromium: $(command -v chromium) installed"

#!/usr/bin/env bash
# Set up everything labelaudit's tests need on a fresh machine:
#   1. the package with its test extras (torch and torchvision resolve as a matching pair from PyPI);
#   2. Debian's chromium and chromium-driver, for the tests that render report.html and drive the
#      review page in a real browser. Installed only when missing and apt-get can be used (root, or
#      passwordless sudo); otherwise the browser tests are skipped outside CI, and fail in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -e ".[dev]"
if { ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; } \
    && command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi
  if [ "$SUDO" != none ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver
  else
    echo "setup: chromium not installed (needs root for apt-get); the browser tests will be skipped" >&2
  fi
fi

#!/usr/bin/env bash
# Headless Chromium + chromedriver for the UI test (tests/test_demo_ui.py), from Debian packages.
# `make setup-browser` runs it on purpose; `make test` runs it too (CI needs the browser) and it
# says what it installs before installing anything.
# Needs root and apt-get; where either is missing (or the install fails) the UI test skips and says why.
set -u
PACKAGES="chromium chromium-driver"
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then exit 0; fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null; then
  echo "ensure_browser: Chromium is missing and cannot be installed here (needs root and apt-get: sudo apt-get install $PACKAGES); the UI test will be skipped" >&2; exit 0
fi
echo "ensure_browser: installing headless Chromium for the UI test: apt-get update && apt-get install -y $PACKAGES (Debian packages, about 300 MB)" >&2
export DEBIAN_FRONTEND=noninteractive
if apt-get update -qq >/dev/null && apt-get install -y -qq $PACKAGES >/dev/null; then
  echo "ensure_browser: installed $(/usr/bin/chromium --version 2>/dev/null | head -1)" >&2
else
  echo "ensure_browser: could not install $PACKAGES; the UI test will be skipped" >&2
fi
exit 0

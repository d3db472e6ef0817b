#!/usr/bin/env bash
# Headless Chromium + chromedriver for the UI test (Debian packages). Needs root and apt; where
# that is missing the UI test skips and says why.
set -u
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then exit 0; fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null; then
  echo "ensure_browser: not root or no apt-get; the UI test will be skipped" >&2; exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq chromium chromium-driver >/dev/null \
  || echo "ensure_browser: could not install chromium; the UI test will be skipped" >&2
exit 0

#!/usr/bin/env bash
# Debian's `prometheus` package (2.42 on bookworm) for the canary's Prometheus test
# (tests/test_canary_prometheus.py). Only the binary is used: the test starts it by hand with its
# own config and storage in tmp; the Debian service is stopped and disabled if the install started it.
# Says what it does before doing it; exits 1 (the test then skips, with this message) when the
# binary is missing and cannot be installed (not root, no apt-get, no package mirror).
set -u
BIN=/usr/bin/prometheus
if [ -x "$BIN" ]; then exit 0; fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null; then
  echo "ensure_prometheus: $BIN is missing and cannot be installed here (needs root and apt-get)" >&2; exit 1
fi
echo "ensure_prometheus: $BIN is missing; installing Debian's prometheus package (apt-get install -y prometheus)" >&2
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d 101: the package's postinst must not start the system service (port 9090) here
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
if ! { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }; then
  echo "ensure_prometheus: apt-get install prometheus failed" >&2; exit 1
fi
if [ ! -x "$BIN" ]; then echo "ensure_prometheus: installed, but $BIN is missing" >&2; exit 1; fi
echo "ensure_prometheus: $("$BIN" --version 2>&1 | head -1)" >&2
exit 0

#!/usr/bin/env bash
# A Python 3.11 base image from Debian's packages alone (debootstrap + import), for machines
# that reach a Debian mirror but no container registry. The images build FROM it as they
# would FROM the official python:3.11-slim-bookworm (same Debian release, Python 3.11).
#   deployment/images/base.sh IMAGE [ENGINE]      (root: debootstrap needs it)
# DEBIAN_MIRROR overrides the mirror (default: the first one this machine's apt uses).
set -euo pipefail
image=${1:?usage: base.sh IMAGE [ENGINE]}
engine=${2:-docker}

mirror=${DEBIAN_MIRROR:-$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
  | grep -v security | head -1 | awk '{print $2}' || true)}
mirror=${mirror:-http://deb.debian.org/debian}

if ! command -v debootstrap >/dev/null; then
  echo "base image: installing debootstrap (Debian package)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap >&2
fi

rootfs=$(mktemp -d /tmp/driftline-base.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "base image: debootstrap bookworm from $mirror" >&2
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$rootfs" "$mirror" >&2
# What an image needs at run time only: no package caches, no docs.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
tar -C "$rootfs" -c . | "$engine" import \
  --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$image" >&2
echo "base image: $image" >&2

#!/bin/sh
# pip inside an image build, with the build's secrets when given: a CA bundle (`cabundle`, for a
# TLS-intercepting proxy) and a pip.conf (`pipconf`, private index settings). Both are mounted
# by BuildKit for one RUN only, so neither is stored in a layer.
[ -s /run/secrets/cabundle ] && export PIP_CERT=/run/secrets/cabundle
[ -s /run/secrets/pipconf ] && export PIP_CONFIG_FILE=/run/secrets/pipconf
exec pip "$@"

#!/usr/bin/env bash
# `make images`: the user-code and serving images, built with BuildKit, then a summary (build
# time and size of each). Settings (environment, all optional):
#   CONTAINER_ENGINE  docker (default) | podman
#   IMAGE_REPO        image name prefix (default localhost/driftline -> .../user-code, .../serving)
#   IMAGE_TAG         (default dev)
#   BASE_IMAGE        (default localhost/driftline-base:bookworm, made from Debian packages by
#                     deployment/images/base.sh when missing; python:3.11-slim-bookworm where a
#                     registry is reachable)
#   TORCH_INDEX_URL   the CPU torch index, used when no local CPU wheel is found
#   PIP_CA_BUNDLE     CA bundle for pip in the builds (default: pip's configured `cert`, else the
#                     system bundle); PIP_CONFIG_FILE, when set, is passed as the `pipconf` secret
#   IMAGES            which to build (default "user-code serving")
#   NO_CACHE          1: rebuild every layer (BuildKit's --no-cache; pip's download cache stays)
set -euo pipefail
cd "$(dirname "$0")/../.."

repo=${IMAGE_REPO:-localhost/driftline}
tag=${IMAGE_TAG:-dev}
base=${BASE_IMAGE:-localhost/driftline-base:bookworm}
torch_index=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}
images=${IMAGES:-user-code serving}
engine=${CONTAINER_ENGINE:-docker}

say() { echo "images: $*" >&2; }
die() { say "$*"; exit 1; }

# A CLI that builds with BuildKit (RUN --mount, --secret): podman does; for docker, the first
# `docker` on PATH with buildx or with BuildKit built in (docker 20.10).
cli=()
if [ "$engine" = podman ]; then
  cli=(podman)
else
  while read -r candidate; do
    if "$candidate" buildx version >/dev/null 2>&1 \
      || DOCKER_BUILDKIT=1 "$candidate" build --help 2>/dev/null | grep -q -- '--secret'; then
      cli=("$candidate"); break
    fi
  done < <(type -ap docker)
  [ ${#cli[@]} -gt 0 ] || die "no docker CLI with BuildKit found (install buildx, or Debian's docker.io 20.10)"
  export DOCKER_BUILDKIT=1
fi
"${cli[@]}" info >/dev/null 2>&1 || die "$engine does not answer: start its daemon (dockerd) or set DOCKER_HOST / CONTAINER_ENGINE=podman"

# The base image: present, pulled, or (the default local name) made from Debian packages.
if ! "${cli[@]}" image inspect "$base" >/dev/null 2>&1; then
  if [ "$base" = localhost/driftline-base:bookworm ]; then
    bash deployment/images/base.sh "$base" "${cli[0]}"
  else
    "${cli[@]}" pull "$base" >&2
  fi
fi

# The CPU torch wheel from pip's own local sources (find-links), if it has one; otherwise the
# builds fetch torch from $TORCH_INDEX_URL.
mkdir -p deployment/wheels
if ! ls deployment/wheels/torch-2.13.0+cpu*.whl >/dev/null 2>&1; then
  pip_cmd=(python3 -m pip)
  [ -x .venv/bin/pip ] && pip_cmd=(.venv/bin/pip)
  staging=$(mktemp -d)
  if "${pip_cmd[@]}" download --quiet --no-index --no-deps --only-binary :all: torch==2.13.0 -d "$staging" >/dev/null 2>&1 \
    && ls "$staging"/torch-2.13.0+cpu*.whl >/dev/null 2>&1; then
    mv "$staging"/torch-2.13.0+cpu*.whl deployment/wheels/
  fi
  rm -rf "$staging"
fi
if ls deployment/wheels/torch-2.13.0+cpu*.whl >/dev/null 2>&1; then
  say "torch from the local wheel $(basename deployment/wheels/torch-2.13.0+cpu*.whl)"
else
  say "torch from $torch_index"
fi

ca=${PIP_CA_BUNDLE:-$( (python3 -m pip config get global.cert 2>/dev/null || true) | tail -1)}
for fallback in "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
  [ -s "$ca" ] && break
  ca=$fallback
done
extra=()
[ "${NO_CACHE:-}" = 1 ] && extra+=(--no-cache)
secrets=()
[ -s "$ca" ] && secrets+=(--secret "id=cabundle,src=$ca")
[ -n "${PIP_CONFIG_FILE:-}" ] && secrets+=(--secret "id=pipconf,src=$PIP_CONFIG_FILE")

summary=()
for image in $images; do
  case $image in
    user-code) dockerfile=deployment/Dockerfile.user-code target=user-code ;;
    serving) dockerfile=deployment/Dockerfile.serving target=serving ;;
    *) die "unknown image $image (user-code | serving)" ;;
  esac
  name=$repo/$image:$tag
  say "building $name (base $base)"
  start=$(date +%s)
  "${cli[@]}" build -f "$dockerfile" --target "$target" \
    --build-arg "BASE_IMAGE=$base" --build-arg "TORCH_INDEX_URL=$torch_index" \
    "${secrets[@]}" "${extra[@]}" --label "io.driftline.image=$image" -t "$name" . >&2
  # the image this tag pointed at before is now untagged: drop it (a 3.6 GB layer each rebuild)
  "${cli[@]}" image prune -f --filter "label=io.driftline.image=$image" >/dev/null
  seconds=$(($(date +%s) - start))
  bytes=$("${cli[@]}" image inspect -f '{{.Size}}' "$name")
  summary+=("$(printf '%-40s %6d s %8.0f MB' "$name" "$seconds" "$(echo "$bytes / 1000000" | bc -l)")")
done

printf '\n%-40s %8s %11s\n' image build size
for line in "${summary[@]}"; do echo "$line"; done

"""The container images for tests: built once per test session with `make images`' script
(BuildKit's layer cache makes an unchanged tree a quick rebuild), so a test never runs a stale
image. A container engine is found or started here, in the tests' setup: `docker` (or podman
with CONTAINER_ENGINE=podman) when it answers, else the machine's own dockerd started with
`../shared/k8s/docker-up.sh` where that folder exists (the project's machines); elsewhere the
tests that need images skip with the reason."""

from __future__ import annotations

import functools
import os
import subprocess
import time
from pathlib import Path

import pytest

from testkit.shared import shared_dir

ROOT = Path(__file__).resolve().parent.parent
SHARED_K8S = shared_dir() / "k8s"
REPO = os.environ.get("IMAGE_REPO", "localhost/driftline")
TAG = os.environ.get("IMAGE_TAG", "dev")
BUILD_LOG = ROOT / "data" / "images-build.log"


def docker_cmd() -> list[str]:
    """The container CLI's argv prefix (DOCKER_HOST is in os.environ once `engine()` has run)."""
    return [os.environ.get("CONTAINER_ENGINE", "docker")]


def _answers() -> bool:
    try:
        return subprocess.run([*docker_cmd(), "info"], capture_output=True, timeout=30, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@functools.cache
def engine() -> str | None:
    """None when an engine answers (started here if need be), else why there is none."""
    if _answers():
        return None
    script = SHARED_K8S / "docker-up.sh"
    if docker_cmd() == ["docker"] and script.exists() and os.geteuid() == 0:
        out = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=300, check=False)
        for line in out.stdout.splitlines():
            if line.startswith("export DOCKER_HOST="):
                os.environ["DOCKER_HOST"] = line.split("=", 1)[1].strip()
        if _answers():
            return None
        return f"{script} did not start dockerd: {out.stderr[-500:]}"
    return f"no container engine answers `{' '.join(docker_cmd())} info` and {script} is not usable here"


@functools.cache
def _build(name: str) -> str | None:
    """Builds one image; None when built, else the reason it could not be."""
    why = engine()
    if why:
        return why
    BUILD_LOG.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with BUILD_LOG.open("a") as log:
        log.write(f"\n=== {name} ===\n")
        log.flush()
        proc = subprocess.run(
            ["bash", str(ROOT / "deployment" / "images" / "build.sh")],
            cwd=ROOT,
            env={**os.environ, "IMAGES": name, "IMAGE_REPO": REPO, "IMAGE_TAG": TAG},
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,  # the log's tail goes into the error below
        )
    if proc.returncode != 0:
        tail = BUILD_LOG.read_text()[-3000:]
        raise RuntimeError(f"building the {name} image failed (log {BUILD_LOG}):\n{tail}")
    print(f"\nimage {REPO}/{name}:{TAG} built in {time.monotonic() - start:.0f} s (log {BUILD_LOG})")
    return None


def require_image(name: str) -> str:
    """The tag of a freshly built image (`user-code` | `serving`); skips with the reason when no
    container engine is available. A failing build fails the test: it is a real defect."""
    why = _build(name)
    if why:
        pytest.skip(f"container image {name}: {why}")
    return f"{REPO}/{name}:{TAG}"


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    """One container CLI call, output captured as text."""
    return subprocess.run([*docker_cmd(), *args], capture_output=True, text=True, timeout=timeout, check=check)

"""Where the machines' shared folder is (`../shared` next to the checkout, or
DRIFTLINE_SHARED_DIR): the Seldon CRD schema and the single-node Kubernetes and dockerd scripts.
Only tests' setup and `.ci/run` use it; the project's own code never does."""

from __future__ import annotations

from pathlib import Path

from driftline import settings

ROOT = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    return Path(settings.get("DRIFTLINE_SHARED_DIR") or ROOT.parent / "shared")

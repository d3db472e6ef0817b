"""What tests of the serving side share: where the serving environment is and the ingress secret."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVING_PY = REPO_ROOT / ".venv-serving" / "bin" / "python"
SECRET = "test-secret-that-is-long-enough-for-hs256!"

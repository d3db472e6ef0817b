"""The Feast feature repo of driftline.

The names live in driftline.spec (`schema` re-exports them with `epoch_seconds`) and are cheap
to import; `definitions` imports feast (seconds), so `build_objects` imports it on first use.
"""

from __future__ import annotations

from driftline.spec import FEATURE_SERVICE, PROJECT, SERVED_FEATURES


def build_objects(lake_root: str, s3_endpoint_override: str | None = None) -> list:
    from .definitions import build_objects as _build

    return _build(lake_root, s3_endpoint_override)


__all__ = ["FEATURE_SERVICE", "PROJECT", "SERVED_FEATURES", "build_objects"]

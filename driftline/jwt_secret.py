"""The ingress's HS256 secret on this machine: DRIFTLINE_INGRESS_JWT_SECRET, or the data dir's
`jwt.secret` that `driftline dev` / `driftline demo` create, so the ingress, the canary
controller and `driftline token` agree without anyone copying a secret around."""

from __future__ import annotations

import secrets
from pathlib import Path

FILE_NAME = "jwt.secret"


def secret_file(data_dir: str | Path) -> Path:
    return Path(data_dir) / FILE_NAME


def file_secret(data_dir: str | Path, create: bool = True) -> str | None:
    """The data dir's secret; a new random one is written first when `create` and there is none."""
    path = secret_file(data_dir)
    if not path.exists():
        if not create:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip()


def ingress_secret(data_dir: str | Path, create: bool = False) -> str | None:
    """DRIFTLINE_INGRESS_JWT_SECRET when set, else the data dir's secret (see `file_secret`)."""
    from driftline import settings

    return settings.get("DRIFTLINE_INGRESS_JWT_SECRET") or file_secret(data_dir, create=create)

"""The ingress's HS256 secret on this machine: DRIFTLINE_INGRESS_JWT_SECRET, or the data dir's
`jwt.secret` that `driftline dev` / `driftline demo` create, so the ingress, the canary
controller and `driftline token` agree without anyone copying a secret around.

The file is created readable by its owner only (0600, in one step: never briefly world-readable)
and the data dir is made not world-readable, since anyone who reads it can mint admin tokens."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import tempfile
from pathlib import Path

FILE_NAME = "jwt.secret"
FILE_MODE = 0o600


def secret_file(data_dir: str | Path) -> Path:
    return Path(data_dir) / FILE_NAME


def write_private(path: Path, text: str) -> None:
    """Write `text` to a new `path` (FileExistsError when there is one), 0600 from the start and
    complete when it appears (written beside it, then linked in), and take group/other access off
    its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = path.parent.stat().st_mode
    if folder & (stat.S_IRWXG | stat.S_IRWXO):
        path.parent.chmod(stat.S_IMODE(folder) & ~(stat.S_IRWXG | stat.S_IRWXO))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp creates 0600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(tmp, FILE_MODE)
        os.link(tmp, path)  # atomic, and refuses to replace a secret another process wrote first
    finally:
        os.unlink(tmp)


def file_secret(data_dir: str | Path, create: bool = True) -> str | None:
    """The data dir's secret; a new random one is written first when `create` and there is none.
    A secret file that others can read (an older checkout's) is made 0600 when read."""
    path = secret_file(data_dir)
    if not path.exists():
        if not create:
            return None
        with contextlib.suppress(FileExistsError):  # another process created it first: use theirs
            write_private(path, secrets.token_hex(32))
    if stat.S_IMODE(path.stat().st_mode) & (stat.S_IRWXG | stat.S_IRWXO):
        path.chmod(FILE_MODE)
    return path.read_text().strip()


def ingress_secret(data_dir: str | Path, create: bool = False) -> str | None:
    """DRIFTLINE_INGRESS_JWT_SECRET when set, else the data dir's secret (see `file_secret`)."""
    from driftline import settings

    return settings.get("DRIFTLINE_INGRESS_JWT_SECRET") or file_secret(data_dir, create=create)

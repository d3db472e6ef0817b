"""http links to the HTML reports under the data dir's `reports/`, which `make dev` serves
(DRIFTLINE_REPORTS_URL): a `file://` link in Dagster's metadata does not open from the UI.

Standard library only; `drift_report` calls `served_report_url` when it writes a report to a
local lake, `driftline dev` serves the folder with `serve`.
"""

from __future__ import annotations

import functools
import http.server
import threading
import urllib.parse
from pathlib import Path

from driftline import settings


def reports_base_url() -> str:
    return (settings.get("DRIFTLINE_REPORTS_URL") or "").rstrip("/")


def served_report_url(report: str | Path, reports_root: str | Path) -> str:
    """The http URL of `report`, a file under `reports_root` (the data dir's `reports/`)."""
    relative = Path(report).resolve().relative_to(Path(reports_root).resolve())
    return f"{reports_base_url()}/{urllib.parse.quote(relative.as_posix())}"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # the standard library's parameter name
        """No line per request on the terminal of `make dev`."""


def serve(reports_root: str | Path, base_url: str | None = None) -> http.server.ThreadingHTTPServer:
    """Serve `reports_root` read-only at `base_url`'s host and port from a daemon thread
    (`server.shutdown()` stops it). OSError when the port is taken."""
    parsed = urllib.parse.urlsplit(base_url or reports_base_url())
    root = Path(reports_root)
    root.mkdir(parents=True, exist_ok=True)
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer((parsed.hostname or "127.0.0.1", parsed.port or 80), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="reports-http", daemon=True).start()
    return server

"""drift_report's HTML reports open from the Dagster UI: `make dev` serves the data dir's
`reports/` over http, and `served_report_url` is the link that server answers."""

from __future__ import annotations

import urllib.request

import pytest

from driftline import report_links
from seldon.runtime import free_port


def test_a_report_is_served_at_its_link(tmp_path, monkeypatch):
    monkeypatch.setenv("DRIFTLINE_REPORTS_URL", f"http://127.0.0.1:{free_port()}/")
    root = tmp_path / "reports"
    html = root / "drift" / "2026-11-30 v2.html"
    html.parent.mkdir(parents=True)
    html.write_text("<html>drift</html>")
    server = report_links.serve(root)
    try:
        url = report_links.served_report_url(html, root)
        assert url == f"{report_links.reports_base_url()}/drift/2026-11-30%20v2.html"
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.status == 200 and resp.read() == b"<html>drift</html>"
    finally:
        server.shutdown()
        server.server_close()


def test_a_file_outside_the_reports_has_no_link(tmp_path):
    with pytest.raises(ValueError):
        report_links.served_report_url(tmp_path / "elsewhere.html", tmp_path / "reports")

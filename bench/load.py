"""Load generation for `make bench-serving`: wrk runs against an endpoint, parsed into figures,
and the prediction log's progress read from the ingress's /metrics."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time

DURATION = os.environ.get("BENCH_SERVING_DURATION", "4s")


def ensure_wrk() -> str | None:
    if not shutil.which("wrk"):
        print("installing wrk (apt-get install -y wrk)")
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=False, capture_output=True)
        if not shutil.which("wrk"):
            subprocess.run(["apt-get", "update"], check=False, capture_output=True)
            subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, capture_output=True)
    return shutil.which("wrk")


def wrk(url: str, body: dict, conns: int, headers: dict | None = None, duration: str = DURATION) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(
            f'wrk.method = "POST"\nwrk.body = {json.dumps(json.dumps(body))}\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            + "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in (headers or {}).items())
        )
    out = subprocess.run(
        ["wrk", "-t", str(min(conns, 2)), "-c", str(conns), "-d", duration, "--latency", "-s", f.name, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(f.name)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert done is not None and rps is not None, f"unexpected wrk output:\n{out}"
    return {
        "rps": float(rps.group(1)),
        "p50": _ms(out, "50%"),
        "p99": _ms(out, "99%"),
        "errors": int(non2xx.group(1)) if non2xx else 0,
        "requests": int(done.group(1)),
        "seconds": float(done.group(2)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[done.group(3)],
    }


class LogWatch:
    """The prediction log's progress, from the ingress's /metrics: every answered row must be
    written, and an ingress run is over only when its log has caught up (otherwise the writer's
    backlog would run on into, and slow, the next measurement, and rows/s would not be sustained)."""

    def __init__(self, base_url: str, admin: dict):
        self.url, self.admin, self.answered = f"{base_url}/metrics", admin, 0

    def written(self) -> int:
        import urllib.request

        req = urllib.request.Request(self.url, headers=self.admin)
        text = urllib.request.urlopen(req, timeout=10).read().decode()
        found = re.search(r"prediction_log_rows_written\{[^}]*\} ([\d.e+]+)", text)
        assert found is not None, "no prediction_log_rows_written in /metrics"
        return int(float(found.group(1)))

    def caught_up(self, answered_rows: int, timeout_s: float = 300.0) -> float:
        """Seconds until the log has written everything answered so far."""
        self.answered += answered_rows
        t0 = time.monotonic()
        while self.written() < self.answered:
            if time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"prediction log: {self.written()} rows written of {self.answered} answered")
            time.sleep(0.05)
        return time.monotonic() - t0


def _ms(out: str, pct: str) -> float:
    found = re.search(rf"{pct}\s+([\d.]+)(us|ms|s)", out)
    assert found is not None, f"no {pct} latency in wrk output"
    value, unit = found.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wait_http(url: str, timeout_s: float = 90.0):
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError as err:
            if getattr(err, "code", None):  # any HTTP answer means it is up
                return
            time.sleep(0.3)
    raise TimeoutError(url)

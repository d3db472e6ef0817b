"""Prediction-log sink for Kubernetes: Seldon's request logger -> the lake's `prediction_log`.

A SeldonDeployment with `logger: {mode: all, url: http://prediction-log-sink...}` POSTs two
CloudEvents per prediction (binary mode): `io.seldon.serving.inference.request` and
`...response`, sharing `Ce-Id` (the request's puid). This server pairs them and hands the pair
to `seldon.predlog.PredictionLog`, the same writer the local ingress uses, so both
environments produce the same table. Runs in the serving image (no dagster):

    python -m deployment.prediction_log_sink --lake /lake --port 8080
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from seldon.predlog import PredictionLog

MAX_PENDING = 100_000  # requests waiting for their response; the oldest are dropped beyond this


def scores(body: bytes) -> list[float]:
    """The fraud scores of a Seldon response (data.ndarray rows or a tensor)."""
    data = json.loads(body).get("data", {})
    if "ndarray" in data:
        return [float(r[-1] if isinstance(r, list) else r) for r in data["ndarray"]]
    return [float(v) for v in data.get("tensor", {}).get("values", [])]


class Pairing:
    def __init__(self, log: PredictionLog):
        self.log, self.pending, self.lock = log, OrderedDict(), threading.Lock()

    def add(self, headers, body: bytes) -> None:
        kind, rid = headers.get("Ce-Type", ""), headers.get("Ce-Id", "")
        with self.lock:
            if kind.endswith(".request"):
                self.pending[rid] = (body, time.time())
                while len(self.pending) > MAX_PENDING:
                    self.pending.popitem(last=False)
                return
            request = self.pending.pop(rid, None)
        if kind.endswith(".response") and request is not None:
            self.log.record(
                rid,
                headers.get("Ce-Requester", ""),
                headers.get("Ce-Inferenceservicename", ""),
                headers.get("Ce-Endpoint", ""),
                headers.get("Ce-Modelid", ""),
                request[0],
                scores(body),
                time.time() - request[1],
            )


class SinkServer(ThreadingHTTPServer):
    """The HTTP server and the pairing its handlers feed (`serve` sets it)."""

    pairing: Pairing


class Handler(BaseHTTPRequestHandler):
    server: SinkServer  # set by socketserver: the server that accepted the request

    def do_GET(self):  # health
        self._reply(200, b'{"status": "ok"}')

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            self.server.pairing.add(self.headers, body)
        except (ValueError, KeyError, TypeError) as err:
            self._reply(400, json.dumps({"error": str(err)}).encode())
            return
        self._reply(202, b"{}")

    def _reply(self, status: int, data: bytes):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # the request logger posts twice per prediction: keep quiet
        pass


def serve(lake: str, port: int, host: str = "0.0.0.0") -> SinkServer:
    server = SinkServer((host, port), Handler)
    server.pairing = Pairing(PredictionLog(lake))
    return server


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--lake", default="/lake")
    p.add_argument("--port", type=int, default=8080)
    a = p.parse_args(argv)
    server = serve(a.lake, a.port)
    try:
        server.serve_forever()
    finally:
        server.pairing.log.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

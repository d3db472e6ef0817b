"""Prediction-log sink for Kubernetes: Seldon's request logger -> the lake's `prediction_log`.

A SeldonDeployment with `logger: {mode: all, url: http://prediction-log-sink...}` POSTs two
CloudEvents per prediction (binary mode): `io.seldon.serving.inference.request` and
`...response`. The executor gives each event its own `Ce-Id` and the prediction's puid in
`Ce-Requestid` (executor/logger/worker.go), so the pair is keyed on `Ce-Requestid` (`Ce-Id` only
when that is absent). Its workers send the two events independently, so either may come first.

Who answered comes from the response, not from the headers: `Ce-Modelid` is the graph node's
name (the same for every version) and `Ce-Endpoint` the predictor's name. The model component
tags every response (`meta.tags`: `model_name`, `model_version`; seldon/model.py), and the local
ingress adds `predictor`, so the version is `meta.tags.model_version` and the predictor
`meta.tags.predictor`, else `Ce-Endpoint`. A response without a model version is refused with a
400 naming the missing tag (per-version monitoring would otherwise mix versions silently).

The feature row the model scored (the component's `meta.tags.model_features`: for raw
transactions the row the online lookup completed, for positional rows their names) goes to the
log beside the request, as the local ingress passes it, so drift monitoring sees what the model
saw in both environments.

The pair goes to `seldon.predlog.PredictionLog`, the writer the local ingress uses, so both
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

from seldon.predlog import MODEL_FEATURES_TAG, LogFull, PredictionLog

MAX_PENDING = 100_000  # events waiting for their other half; the oldest are dropped beyond this
REQUEST, RESPONSE = "io.seldon.serving.inference.request", "io.seldon.serving.inference.response"


class BadEvent(ValueError):
    """An event the sink cannot record; the message names what is wrong (answered with a 400)."""


def _json(body: bytes, what: str) -> dict:
    try:
        doc = json.loads(body)
    except ValueError:
        raise BadEvent(f"{what} body is not JSON") from None
    if not isinstance(doc, dict):
        raise BadEvent(f"{what} body must be a JSON object")
    return doc


def scores(response: dict) -> list[float]:
    """The fraud scores of a Seldon response (data.ndarray rows or a tensor)."""
    data = response.get("data", {})
    if "ndarray" in data:
        return [float(r[-1] if isinstance(r, list) else r) for r in data["ndarray"]]
    return [float(v) for v in data.get("tensor", {}).get("values", [])]


def answered_by(response: dict, headers) -> tuple[str, str]:
    """(predictor, model version) of a response: its `meta.tags`, the predictor else `Ce-Endpoint`."""
    tags = response.get("meta", {}).get("tags") or {}
    version = str(tags.get("model_version") or "")
    if not version:
        raise BadEvent("response meta.tags.model_version is missing: the model component must tag its responses")
    predictor = str(tags.get("predictor") or headers.get("Ce-Endpoint", ""))
    if not predictor:
        raise BadEvent("no predictor: neither response meta.tags.predictor nor the Ce-Endpoint header")
    return predictor, version


def model_features(response: dict) -> dict | None:
    """What the model scored where the request does not say it (`meta.tags.model_features`), for
    the log's `model_features` column; None when the response carries none."""
    seen = (response.get("meta", {}).get("tags") or {}).get(MODEL_FEATURES_TAG)
    if seen is None:
        return None
    if not isinstance(seen, dict) or not isinstance(seen.get("names"), list):
        raise BadEvent(f"response meta.tags.{MODEL_FEATURES_TAG} must be an object with a names list")
    return seen


class Pairing:
    """Pairs the request and response events of one prediction, whichever arrives first."""

    def __init__(self, log: PredictionLog):
        self.log, self.pending, self.lock = log, OrderedDict(), threading.Lock()

    def add(self, headers, body: bytes) -> None:
        kind = headers.get("Ce-Type", "")
        if kind not in (REQUEST, RESPONSE):
            return  # feedback events and anything else: not part of the prediction log
        rid = headers.get("Ce-Requestid") or headers.get("Ce-Id", "")
        if not rid:
            raise BadEvent("event has neither Ce-Requestid nor Ce-Id")
        answer = None
        if kind == RESPONSE:  # read on arrival, so a bad response is refused to its sender
            doc = _json(body, "response")
            answer = (*answered_by(doc, headers), scores(doc), model_features(doc))
        event = (kind, body, time.time(), answer)
        with self.lock:
            other = self.pending.pop(rid, None)
            if other is None or other[0] == kind:  # first half (or a duplicate): wait for the other
                self.pending[rid] = event
                while len(self.pending) > MAX_PENDING:
                    self.pending.popitem(last=False)
                return
        request, response = (other, event) if kind == RESPONSE else (event, other)
        answer = response[3]
        if answer is None:  # unreachable: a response event always carries its answer
            raise BadEvent("response event without its answer")
        predictor, version, values, seen = answer
        self.log.record(
            rid,
            headers.get("Ce-Requester", ""),
            headers.get("Ce-Inferenceservicename", ""),
            predictor,
            version,
            request[1],
            values,
            max(response[2] - request[2], 0.0),  # between the two events: the executor sends no latency
            model_features=seen,
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
        except (ValueError, KeyError, TypeError) as err:  # BadEvent, malformed data values
            self._reply(400, json.dumps({"error": str(err)}).encode())
            return
        except LogFull as err:  # the writer is behind: the sender logs the failure
            self._reply(503, json.dumps({"error": str(err)}).encode())
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

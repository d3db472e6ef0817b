"""The ingress: the local stand-in for the Istio gateway in front of a SeldonDeployment.

    python -m seldon.ingress --manifest data/serving/seldondeployment.yaml \
        --endpoints data/serving/endpoints.json --port 8080 --lake data/lake

Seldon's external API (`/seldon/<ns>/<deployment>/api/v1.0/predictions|feedback|metadata|
health/status`), traffic split by the manifest's weights, a pin header, a shadow, JWT auth,
Prometheus `/metrics` and the prediction log. The stdlib threading server with keep-alive
and one pooled connection per thread and predictor is enough for the 2 ms budget (see
`make bench-serving`). Secrets come from files or the environment and are never logged.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import re
import signal
import ssl
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from driftline import settings
from seldon.auth import ADMIN, PREDICT, Authenticator, AuthError
from seldon.manifest import CONTAINER
from seldon.predlog import LogFull, PredictionLog
from seldon.prom import Metrics
from seldon.routing import RouteError, Routes

log = logging.getLogger("seldon.ingress")
API = re.compile(r"^(?:/seldon/([\w.-]+)/([\w.-]+))?/api/v1\.0/(predictions|feedback|metadata|health/status)/?$")
PIN_HEADER, ID_HEADERS = "Seldon-Predictor", ("Seldon-Puid", "X-Request-Id")
_local = threading.local()


def forward(route, path: str, body: bytes | None, timeout_s: float, method: str = "POST") -> tuple[int, bytes]:
    """One pooled keep-alive connection per thread and predictor; one retry on a stale connection."""
    pool = getattr(_local, "pool", None)
    if pool is None:
        pool = _local.pool = {}
    for attempt in (0, 1):
        conn = pool.get((route.host, route.port))
        if conn is None:
            conn = pool[(route.host, route.port)] = http.client.HTTPConnection(
                route.host, route.port, timeout=timeout_s
            )
        try:
            conn.request(method, path, body, {"Content-Type": "application/json"} if body is not None else {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        except (ConnectionError, http.client.HTTPException, OSError) as err:
            conn.close()
            pool.pop((route.host, route.port), None)
            if attempt or isinstance(err, TimeoutError):
                raise
    raise RuntimeError("unreachable")


class Ingress(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512

    def __init__(
        self,
        address,
        routes: Routes,
        auth: Authenticator,
        plog: PredictionLog | None,
        timeout_s: float = 5.0,
        max_body_bytes: int = 8 << 20,
        access_log: bool = False,
    ):
        super().__init__(address, Handler)
        self.routes, self.auth, self.plog = routes, auth, plog
        self.metrics = Metrics(routes.name)
        self.timeout_s, self.max_body_bytes, self.access_log = timeout_s, max_body_bytes, access_log
        self.closing = False
        self.shadow_pool = ThreadPoolExecutor(2, thread_name_prefix="shadow")
        self.shadow_slots = threading.BoundedSemaphore(64)
        self._watch = threading.Thread(target=self._watch_files, daemon=True)
        self._watch.start()

    def _watch_files(self):
        while not self.closing:
            try:
                if self.routes.refresh():
                    log.info("routes: %s", self.routes.weights())
            except Exception as err:  # noqa: BLE001 - a half-written file is retried next tick
                log.warning("routes not reloaded: %s", err)
            time.sleep(0.25)

    def drain(self, timeout_s: float = 30.0):
        """Clean shutdown: refuse new work, let in-flight requests finish, write the log."""
        self.closing = True
        stopper = threading.Thread(target=self.shutdown, daemon=True)
        stopper.start()
        stopper.join(5.0)  # a client stuck in a TLS handshake must not block the shutdown
        deadline = time.monotonic() + timeout_s
        while self.metrics.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        self.shadow_pool.shutdown(wait=False, cancel_futures=True)
        if self.plog:
            self.plog.close()
        self.server_close()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: Ingress

    def log_message(self, format, *args):  # the stdlib logs raw request lines; we log our own fields
        pass

    def _send(self, status: int, body: bytes | dict, headers: dict | None = None, close: bool = False):
        if isinstance(body, dict):
            body = json.dumps(body).encode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        if close:
            extra += "Connection: close\r\n"
            self.close_connection = True
        head = (
            f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n"
        )
        self.wfile.write(head.encode("latin-1") + body)

    def _error(self, status: int, message: str, close: bool = False, **headers):
        self._send(status, {"status": {"code": status, "info": message, "status": "FAILURE"}}, headers, close)

    def _principal(self, scope: str):
        return self.server.auth.authenticate(self.headers.get("Authorization"), scope)

    def _body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding"):
            self._error(411, "send Content-Length, not a chunked body", close=True)
            return None
        try:
            n = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            n = -1
        if n < 0 or n > self.server.max_body_bytes:
            self._error(413 if n > 0 else 400, f"body must be 0..{self.server.max_body_bytes} bytes", close=True)
            return None
        return self.rfile.read(n)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def _dispatch(self, method: str):
        srv = self.server
        path = self.path.split("?", 1)[0]
        if path in ("/live", "/ready"):
            ok = path == "/live" or bool(srv.routes.weights())
            return self._send(200 if ok else 503, {"status": "ok" if ok else "no predictor ready"})
        srv.metrics.enter()
        try:
            if srv.closing:
                return self._error(503, "ingress is shutting down", close=True)
            if path == "/metrics" or path.startswith("/admin/"):
                self._principal(ADMIN)
                return self._admin(method, path)
            m = API.match(path)
            if not m:
                return self._error(404, "not found")
            ns, dep, op = m.groups()
            if dep is not None and (ns != srv.routes.namespace or dep != srv.routes.name):
                return self._error(404, f"no deployment {ns}/{dep}")
            principal = self._principal(PREDICT)
            if op in ("metadata", "health/status"):
                route = srv.routes.choose(None, self.headers.get(PIN_HEADER) or "main")
                status, data = forward(route, f"/api/v1.0/{op}", None, srv.timeout_s, "GET")
                return self._send(status, data)
            if method != "POST":
                return self._error(405, f"{op} needs POST")
            body = self._body()
            if body is not None:
                self._predict(op, body, principal)
        except AuthError as err:
            self._error(
                err.status,
                err.message,
                close=err.status == 401,
                **({"WWW-Authenticate": 'Bearer error="invalid_token"'} if err.status == 401 else {}),
            )
        except RouteError as err:
            self._error(err.status, err.message)
        except (ConnectionError, OSError, http.client.HTTPException) as err:
            self._error(
                503 if not isinstance(err, TimeoutError) else 504, f"predictor unavailable: {type(err).__name__}"
            )
        finally:
            srv.metrics.exit()

    def _predict(self, op: str, body: bytes, principal):
        srv, t0 = self.server, time.perf_counter()
        rid = next((self.headers[h] for h in ID_HEADERS if self.headers.get(h)), None)
        route = srv.routes.choose(rid, self.headers.get(PIN_HEADER))
        rid = rid or uuid.uuid4().hex
        try:
            status, data = forward(route, f"/api/v1.0/{op}", body, srv.timeout_s)
        except (ConnectionError, OSError, http.client.HTTPException) as err:
            srv.metrics.request(route.name, 504 if isinstance(err, TimeoutError) else 503, time.perf_counter() - t0)
            raise
        scores = None
        if status == 200 and op == "predictions":
            resp = json.loads(data)
            scores = resp.get("data", {}).get("ndarray") or []
            meta = resp.setdefault("meta", {})
            meta["puid"] = rid
            meta["requestPath"] = {CONTAINER: srv.routes.image}
            meta.setdefault("tags", {}).update(predictor=route.name, model_version=route.version)
            data = json.dumps(resp).encode()
            if srv.plog is not None:
                try:
                    srv.plog.record(
                        rid,
                        principal.subject,
                        srv.routes.name,
                        route.name,
                        route.version,
                        body,
                        scores,
                        time.perf_counter() - t0,
                    )
                except LogFull:
                    srv.metrics.request(route.name, 503, time.perf_counter() - t0)
                    self._error(503, "prediction log is full; retry later", False, **{"Retry-After": "1"})
                    return
        elapsed = time.perf_counter() - t0
        srv.metrics.request(route.name, status, elapsed, scores)
        self._send(status, data, {"Seldon-Puid": rid, "Seldon-Predictor": route.name, "X-Model-Version": route.version})
        if srv.access_log:
            log.info(
                "%s %s %d sub=%s predictor=%s %.1fms",
                self.command,
                self.path,
                status,
                principal.subject,
                route.name,
                elapsed * 1000,
            )
        shadow = srv.routes.shadow()
        if shadow is not None and op == "predictions" and srv.shadow_slots.acquire(blocking=False):
            srv.shadow_pool.submit(self._shadow, shadow, body)

    def _shadow(self, route, body: bytes):
        t0 = time.perf_counter()
        try:
            status, data = forward(route, "/api/v1.0/predictions", body, self.server.timeout_s)
            scores = json.loads(data).get("data", {}).get("ndarray") if status == 200 else None
        except Exception:  # noqa: BLE001 - shadow answers are discarded; only its metrics count
            status, scores = 503, None
        finally:
            self.server.shadow_slots.release()
        self.server.metrics.request(route.name, status, time.perf_counter() - t0, scores)

    def _admin(self, method: str, path: str):
        routes = self.server.routes
        if path == "/metrics":
            m = self.server.metrics
            m.gauges.update({f'traffic_weight|predictor="{n}"': w for n, w in routes.weights().items()})
            if self.server.plog:
                pl = self.server.plog
                m.gauges.update(
                    {
                        "prediction_log_queue": pl.queue.qsize(),
                        "prediction_log_rows_written": pl.rows_written,
                        "prediction_log_rejected": pl.rejected,
                        "prediction_log_queued_bytes": pl.queued_bytes,
                    }
                )
            body = m.render().encode()
            return self._send(200, body, {"Content-Type": "text/plain; version=0.0.4"})
        if path == "/admin/state":
            return self._send(200, routes.state())
        if path == "/admin/traffic" and method in ("POST", "PUT"):
            body = self._body()
            try:
                weights = json.loads(body or b"{}").get("weights")
            except ValueError:
                weights = None
            if not isinstance(weights, dict):
                return self._error(400, 'send {"weights": {"main": 90, "canary": 10}}')
            return self._send(200, {"weights": routes.set_weights(weights)})
        if path == "/admin/reload" and method == "POST":
            self._body()
            routes.refresh(force=True)
            return self._send(200, routes.state())
        return self._error(404, "not found")


def _secret(path: str | None, name: str) -> str | None:
    """A key from its file, else from its environment variable (declared in driftline.settings,
    stdlib only: the one serving-side read of the environment besides seldon-core's own)."""
    if path:
        with open(path) as f:
            return f.read().strip()
    return settings.get(name)


def main(argv=None):
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])  # no docstring under -OO
    p.add_argument("--manifest", required=True)
    p.add_argument("--endpoints", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--lake", default="", help="lake root for the prediction log (empty: no log)")
    p.add_argument("--jwt-secret-file", help="HS256 secret (else env DRIFTLINE_INGRESS_JWT_SECRET)")
    p.add_argument("--jwt-public-key-file", help="RS256 public key PEM (else env DRIFTLINE_INGRESS_JWT_PUBLIC_KEY)")
    p.add_argument("--jwt-audience")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--timeout-s", type=float, default=5.0)
    p.add_argument("--log-queue", type=int, default=10_000, help="requests waiting in the log's queue")
    p.add_argument("--log-queue-mb", type=int, default=256, help="MB of request bodies the log holds unwritten")
    p.add_argument("--log-writers", type=int, default=1, help="prediction-log files encoded at once (processes)")
    p.add_argument("--log-put-timeout-s", type=float, default=5.0)
    p.add_argument("--access-log", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    auth = Authenticator(
        hs256_secret=_secret(args.jwt_secret_file, "DRIFTLINE_INGRESS_JWT_SECRET"),
        rs256_public_key=_secret(args.jwt_public_key_file, "DRIFTLINE_INGRESS_JWT_PUBLIC_KEY"),
        audience=args.jwt_audience,
    )
    plog = (
        PredictionLog(
            args.lake,
            max_queue=args.log_queue,
            put_timeout_s=args.log_put_timeout_s,
            max_queue_bytes=args.log_queue_mb << 20,
            writers=args.log_writers,
        )
        if args.lake
        else None
    )
    server = Ingress(
        (args.host, args.port),
        Routes(args.manifest, args.endpoints),
        auth,
        plog,
        args.timeout_s,
        access_log=args.access_log,
    )
    scheme = "http"
    if args.tls_cert and args.tls_key:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log.info(
        "ingress %s://%s:%d for %s/%s (auth %s)",
        scheme,
        args.host,
        server.server_address[1],
        server.routes.namespace,
        server.routes.name,
        auth.algorithm,
    )
    stop.wait()
    log.info("shutting down: draining requests and the prediction log")
    server.drain()
    if plog:
        log.info(
            "prediction log: %d rows in %d files, %d refused", plog.rows_written, plog.files_written, plog.rejected
        )


if __name__ == "__main__":
    main()

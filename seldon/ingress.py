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
import contextlib
import http.client
import io
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
from seldon.errors import HttpError
from seldon.http_guard import (
    MAX_BODY_BYTES,
    FramingError,
    body_framing,
    read_chunked,
    read_exact,
    reason_for,
    seldon_status,
)
from seldon.manifest import CONTAINER
from seldon.predlog import MODEL_FEATURES_TAG, LogFull, PredictionLog
from seldon.prom import Metrics
from seldon.routing import Routes

log = logging.getLogger("seldon.ingress")
API = re.compile(r"^(?:/seldon/([\w.-]+)/([\w.-]+))?/api/v1\.0/(predictions|feedback|metadata|health/status)/?$")
PIN_HEADER, ID_HEADERS = "Seldon-Predictor", ("Seldon-Puid", "X-Request-Id")
MAX_REQUEST_ID = 256
_local = threading.local()


class MethodNotAllowed(HttpError):
    def __init__(self, path: str, method: str, allowed: tuple[str, ...]):
        super().__init__(405, f"{path} answers {', '.join(allowed)}, not {method[:20]!r}")
        self.allowed = allowed


class ClientGone(Exception):
    """The client closed or reset its connection mid-request: nothing to answer."""


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
        max_body_bytes: int = MAX_BODY_BYTES,
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
    """Every answer is JSON in Seldon's status format, for any method, path or malformed request
    (the stdlib's HTML error pages and its 501 for unknown methods never reach a client)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 30.0  # idle keep-alive, a stalled body or request line: answered 408 or closed
    server: Ingress
    _unread: int | None = 0  # body bytes not read yet (None: a chunked body); close if not consumed

    def log_message(self, format, *args):  # the stdlib logs raw request lines; we log our own fields
        pass

    def handle_one_request(self):
        """The stdlib's loop step, with a JSON answer for every outcome: TLS spoken to this plain
        port, a request line over 64 KiB, any method (not just those with a do_* method)."""
        self._unread, self.raw_requestline = 0, b""
        try:
            rfile = self.rfile
            tls = isinstance(self.connection, ssl.SSLSocket)
            if not tls and isinstance(rfile, io.BufferedReader) and rfile.peek(1)[:1] == b"\x16":
                self.requestline = ""
                self._error(400, "TLS handshake received on the plain-HTTP port: use http://", close=True)
                return
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline, self.request_version, self.command = "", "", ""
                self._error(414, "request line over 65536 bytes", close=True)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():  # answered through send_error
                return
            self._dispatch(self.command)
            self.wfile.flush()
        except TimeoutError:
            if self.raw_requestline and not self.close_connection:
                with contextlib.suppress(OSError):
                    self._error(408, f"request not received within {self.timeout:.0f}s", close=True)
            self.close_connection = True
        except (ConnectionError, BrokenPipeError):
            self.close_connection = True

    def send_error(self, code, message=None, explain=None):
        """The stdlib's parse errors (400, 431, 505) as JSON; never a 5xx for a client's mistake."""
        code = 400 if code >= 500 else code
        self._error(code, message or explain or self.responses.get(code, ("bad request",))[0], close=True)

    def _send(self, status: int, body: bytes | dict, headers: dict | None = None, close: bool = False):
        if isinstance(body, dict):
            body = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
        if self._unread != 0:  # an unread body would be taken for the next request
            close = True
        if close:
            self.close_connection = True
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        if close:
            extra += "Connection: close\r\n"
        head = f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
        self.wfile.write(head.encode("latin-1") + (b"" if getattr(self, "command", "") == "HEAD" else body))

    def _error(self, status: int, message: str, close: bool = False, **headers):
        if status == 503:
            headers.setdefault("Retry-After", "1")
        self._send(status, seldon_status(status, message, reason_for(status)), headers, close)

    def _principal(self, scope: str):
        return self.server.auth.authenticate(self.headers.get("Authorization"), scope)

    def _frame(self):
        """Check the body's framing before anything else (FramingError: answered and closed)."""
        if self.headers.defects or self.headers.get_payload():  # a line that is not `name: value`
            raise FramingError(400, "a header line is not 'name: value'")
        self._unread = body_framing(list(self.headers.items()), self.server.max_body_bytes)

    def _body(self) -> bytes:
        n, self._unread = self._unread, 0
        try:
            if n is None:
                return read_chunked(self.rfile, self.server.max_body_bytes)
            return read_exact(self.rfile, n)
        except TimeoutError:
            raise FramingError(408, f"body not received within {self.timeout:.0f}s") from None
        except ConnectionError:
            raise ClientGone from None

    def _allow(self, method: str, allowed: tuple[str, ...]):
        if method not in allowed and not (method == "HEAD" and "GET" in allowed):
            raise MethodNotAllowed(self.path.split("?", 1)[0][:200], method, allowed)

    def _dispatch(self, method: str):
        srv = self.server
        srv.metrics.enter()
        try:
            self._frame()
            target = self.path
            if not target.startswith("/"):
                raise HttpError(400, "the request target must be a path starting with '/'")
            path = target.split("?", 1)[0]
            if path in ("/live", "/ready"):
                self._allow(method, ("GET",))
                ok = path == "/live" or bool(srv.routes.weights())
                if ok:
                    return self._send(200, {"status": "ok"})
                return self._error(503, "no predictor ready")
            if srv.closing:
                return self._error(503, "ingress is shutting down", close=True)
            if path == "/metrics" or path.startswith("/admin/"):
                self._principal(ADMIN)
                return self._admin(method, path)
            m = API.match(path)
            if not m:
                return self._error(404, f"no such path: {path[:200]!r}")
            ns, dep, op = m.groups()
            if dep is not None and (ns != srv.routes.namespace or dep != srv.routes.name):
                return self._error(404, f"no deployment {ns}/{dep}")
            principal = self._principal(PREDICT)
            if op in ("metadata", "health/status"):
                self._allow(method, ("GET",))
                if self._unread:
                    self._body()  # a GET with a body: read and ignored
                route = srv.routes.choose(None, self.headers.get(PIN_HEADER) or "main")
                status, data = forward(route, f"/api/v1.0/{op}", None, srv.timeout_s, "GET")
                return self._send(status, data, {"Retry-After": "1"} if status == 503 else None)
            self._allow(method, ("POST",))
            rid = next((self.headers[h] for h in ID_HEADERS if self.headers.get(h)), None)
            if rid is not None and (len(rid) > MAX_REQUEST_ID or not rid.isprintable()):
                raise HttpError(400, f"{' / '.join(ID_HEADERS)}: at most {MAX_REQUEST_ID} printable characters")
            self._predict(op, self._body(), principal, rid)
        except AuthError as err:
            self._error(
                err.status,
                err.message,
                close=err.status == 401,
                **({"WWW-Authenticate": 'Bearer error="invalid_token"'} if err.status == 401 else {}),
            )
        except FramingError as err:
            self._error(err.status, err.message, close=True)
        except MethodNotAllowed as err:
            self._error(405, err.message, Allow=", ".join(err.allowed))
        except HttpError as err:
            self._error(err.status, err.message)
        except ClientGone:
            self.close_connection = True
        except TimeoutError:  # the client's own stalls are FramingError 408 (`_body`)
            self._error(503, f"predictor did not answer within {srv.timeout_s:g}s")
        except (ConnectionError, OSError, http.client.HTTPException) as err:
            self._error(503, f"predictor unavailable: {type(err).__name__}")
        except Exception:  # a bug of ours: a JSON 500 and a traceback in the log, not a dropped connection
            log.exception("unexpected error on %s %s", method[:20], self.path[:200])
            self._error(500, "internal error in the ingress", close=True)
        finally:
            srv.metrics.exit()

    def _predict(self, op: str, body: bytes, principal, rid: str | None):
        srv, t0 = self.server, time.perf_counter()
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
            tags = meta.setdefault("tags", {})
            seen = tags.pop(MODEL_FEATURES_TAG, None)  # what the model scored: for the log, not the client
            tags.update(predictor=route.name, model_version=route.version)
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
                        model_features=seen,
                    )
                except LogFull:
                    srv.metrics.request(route.name, 503, time.perf_counter() - t0)
                    self._error(503, "prediction log is full; retry later", False, **{"Retry-After": "1"})
                    return
        elapsed = time.perf_counter() - t0
        srv.metrics.request(route.name, status, elapsed, scores)
        headers = {"Seldon-Puid": rid, "Seldon-Predictor": route.name, "X-Model-Version": route.version}
        if status == 503:
            headers["Retry-After"] = "1"
        self._send(status, data, headers)
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
        allowed = {"/metrics": ("GET",), "/admin/state": ("GET",), "/admin/traffic": ("POST", "PUT")}
        allowed["/admin/reload"] = ("POST",)
        if path not in allowed:
            return self._error(404, f"no admin path {path[:200]!r} (one of {', '.join(allowed)})")
        self._allow(method, allowed[path])
        body = self._body()  # read whatever came, so the connection stays usable
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
            return self._send(200, m.render().encode(), {"Content-Type": "text/plain; version=0.0.4"})
        if path == "/admin/state":
            return self._send(200, routes.state())
        if path == "/admin/traffic":
            try:
                doc = json.loads(body or b"{}")
            except (ValueError, RecursionError):
                doc = None
            weights = doc.get("weights") if isinstance(doc, dict) else None
            if not isinstance(weights, dict):
                return self._error(400, 'send a JSON object {"weights": {"main": 90, "canary": 10}}')
            return self._send(200, {"weights": routes.set_weights(weights)})
        routes.refresh(force=True)
        return self._send(200, routes.state())


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

"""The predictors' entry point: `seldon-core-microservice` with its HTTP side hardened.

    python -m seldon.http_predictor seldon.model.FraudModel --service-type MODEL --http-port 9000 ...

Same command line, same Flask app and API as seldon-core 1.17.1's `seldon-core-microservice`
(this calls its `main`), with three things around them, because a predictor is reachable
without the ingress (inside its pod, or on loopback locally):
- gunicorn 20.1.0 refuses ambiguous framing (Transfer-Encoding with Content-Length, two or
  invalid Content-Lengths, folded header lines) with 400 before it reads a body: 20.1.0 takes
  the chunked body and ignores the length, which is how requests are smuggled behind a front
  server that reads the length (CVE-2024-1135, CVE-2024-6827);
- gunicorn's own parse errors are answered in Seldon's JSON status format, not its HTML page;
- the Flask app answers unknown paths and methods 404 / 405 (seldon-core's catch-all error
  handler turns them into 500 MICROSERVICE_INTERNAL_ERROR), refuses bodies over
  `MAX_BODY_BYTES` (413), and checks before the view runs that the body is readable JSON
  (nesting, the `json` form field or query parameter, multipart fields), answering 400 with
  what was wrong instead of a 500 from deep inside seldon-core.
"""

from __future__ import annotations

import contextlib
import json
import logging

from seldon.http_guard import (
    MAX_BODY_BYTES,
    FramingError,
    UnreaderFile,
    body_framing,
    read_chunked,
    reason_for,
    seldon_status,
)

log = logging.getLogger("seldon.http_predictor")
BODY_PATHS = ("/predict", "/send-feedback", "/transform-input", "/transform-output", "/route", "/aggregate")
OBJECT_PATHS = ("/predictions", "/feedback")  # Seldon messages: a JSON object
MAX_PROTO_DEPTH = 64  # a Seldon message is ~6 deep; protobuf's parser recurses ~10 frames a level
CLIENT_TIMEOUT_S = 30.0  # the one sync worker waits this long for a stalled client, then drops it


def _json_error(code: int, info: str):
    from flask import jsonify

    response = jsonify(seldon_status(code, info, reason_for(code)))
    response.status_code = code
    return response


def _check_json_text(text, what: str) -> object:
    try:
        return json.loads(text)
    except RecursionError:
        raise _Refused(400, f"{what}: JSON nested too deeply") from None
    except ValueError as err:
        raise _Refused(400, f"{what} is not JSON: {str(err)[:200]}") from None


def _depth(doc) -> int:
    """How deep lists and objects nest in `doc` (iterative: no recursion of its own)."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, (list, dict)):
            deepest = max(deepest, level)
            if deepest > MAX_PROTO_DEPTH:
                return deepest
            stack.extend((child, level + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


class _Refused(Exception):
    def __init__(self, code: int, info: str):
        super().__init__(info)
        self.code, self.info = code, info


def _check_request():
    """Before seldon-core's view: the body is there, within bounds, and parses as it will parse it."""
    from flask import request
    from werkzeug.exceptions import BadRequest

    path = request.path
    if not (path.endswith(OBJECT_PATHS) or path in BODY_PATHS) or request.method not in ("POST", "GET", "PUT"):
        return None
    try:
        ctype = request.content_type or ""
        if "multipart/form-data" in ctype:
            for key in request.form:
                if key != "strData":
                    _check_json_text(request.form[key], f"form field {key[:40]!r}")
            for key, upload in request.files.items():
                if key != "binData":
                    try:
                        upload.read().decode("utf-8")
                    except UnicodeDecodeError:
                        raise _Refused(400, f"file field {key[:40]!r} is not UTF-8") from None
                    upload.seek(0)
            return None
        data = request.get_data(cache=True)
        if request.content_length is not None and len(data) != request.content_length:
            raise _Refused(400, f"body ended after {len(data)} of the {request.content_length} bytes announced")
        text = request.form.get("json") or request.args.get("json")
        if text:
            doc = _check_json_text(text, "the 'json' parameter")
        else:
            try:
                doc = request.get_json(cache=True)
            except BadRequest:
                return None  # seldon-core answers 400 "Can't find JSON in data"
            except RecursionError:
                raise _Refused(400, "body: JSON nested too deeply") from None
        if doc is not None and path.endswith(OBJECT_PATHS) and not isinstance(doc, dict):
            raise _Refused(400, f"a Seldon message is a JSON object, not {type(doc).__name__}")
        if not path.endswith("/predictions") and _depth(doc) > MAX_PROTO_DEPTH:
            # seldon-core parses these into protobuf (json_format.ParseDict), whose recursion
            # ends in a RecursionError (a 500) long before the JSON parser's limit
            raise _Refused(400, f"JSON nested deeper than {MAX_PROTO_DEPTH} levels")
    except _Refused as err:
        return _json_error(err.code, err.info)
    except OSError as err:  # gunicorn's chunked reader: bad chunk sizes, missing CRLF, client gone
        return _json_error(400, f"body could not be read: {type(err).__name__} {str(err)[:200]}")
    return None


def harden(app):
    """seldon-core's Flask app, answering every path and method in Seldon's JSON format."""
    from werkzeug.exceptions import HTTPException

    def http_error(err: HTTPException):
        response = _json_error(err.code or 400, err.description or err.name)
        if err.code == 405 and getattr(err, "valid_methods", None):
            response.headers["Allow"] = ", ".join(err.valid_methods)  # type: ignore[attr-defined]
        return response

    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.register_error_handler(HTTPException, http_error)  # more specific than seldon-core's Exception
    app.before_request(_check_request)
    app.after_request(_retry_after)
    return app


def _retry_after(response):
    """A 503 (model not loaded, feature server down) tells the client when to come back."""
    if response.status_code == 503 and "Retry-After" not in response.headers:
        response.headers["Retry-After"] = "1"
    return response


def _patch_gunicorn():
    from gunicorn import util
    from gunicorn.http import body as gunicorn_body
    from gunicorn.http import errors, message
    from gunicorn.http.unreader import IterUnreader
    from gunicorn.workers import base, sync

    class Refused(errors.InvalidHeader):
        def __init__(self, status: int, info: str, req=None):
            super().__init__(info, req)
            self.status, self.info = status, info

        def __str__(self):
            return self.info

    set_body_reader = message.Message.set_body_reader

    def guarded_body_reader(self):
        try:
            length = body_framing(self.headers, MAX_BODY_BYTES)
            if length is None:  # gunicorn 20.1.0's chunked reader spins forever on a body cut short
                source = UnreaderFile(self.unreader)
                data = read_chunked(source, MAX_BODY_BYTES)  # then read by gunicorn like a sized body
                self.body = gunicorn_body.Body(gunicorn_body.LengthReader(IterUnreader([data]), len(data)))
                source.give_back()
                return
        except FramingError as err:
            raise Refused(err.status, err.message, self) from None
        set_body_reader(self)

    parse, parse_headers = message.Request.parse, message.Message.parse_headers

    def guarded_parse(self, unreader):
        """Refuse what gunicorn 20.1.0 would wait on forever or answer in its own way: TLS spoken to
        this plain port, lines ending in a bare LF, HTTP versions other than 1.0 and 1.1."""
        first = unreader.read()
        unreader.unread(first)
        if first[:1] == b"\x16":
            raise Refused(400, "TLS handshake received on the plain-HTTP port: use http://", self)
        lf = first.find(b"\n")
        if lf >= 0 and first[lf - 1 : lf] != b"\r":
            raise Refused(400, "request lines end with CRLF, not a bare LF", self)
        rest = parse(self, unreader)
        if self.version not in ((1, 0), (1, 1)):
            raise Refused(400, f"HTTP/{self.version[0]}.{self.version[1]} is not spoken here: HTTP/1.1", self)
        return rest

    def guarded_parse_headers(self, data, *args, **kwargs):
        if b"\r\n " in data or b"\r\n\t" in data or data[:1] in (b" ", b"\t"):
            raise Refused(400, "a header is folded over several lines (obs-fold)", self)
        return parse_headers(self, data, *args, **kwargs)

    handle = sync.SyncWorker.handle

    def handle_with_timeout(self, listener, client, addr):
        client.settimeout(CLIENT_TIMEOUT_S)  # a client that stalls mid-request frees the worker
        return handle(self, listener, client, addr)

    def write_error(sock, status_int, reason, mesg):
        body = json.dumps(seldon_status(status_int, mesg or reason, reason_for(status_int))).encode()
        head = f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        util.write_nonblock(sock, f"{head}Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body)

    handle_error = base.Worker.handle_error
    bad_body = (errors.InvalidChunkSize, errors.ChunkMissingTerminator, errors.NoMoreData)

    def guarded_handle_error(self, req, client, addr, exc):
        if isinstance(exc, (Refused, *bad_body)):
            status = exc.status if isinstance(exc, Refused) else 400
            info = str(exc) if isinstance(exc, Refused) else f"malformed body: {type(exc).__name__}"
            with contextlib.suppress(OSError):
                write_error(client, status, "Bad Request" if status == 400 else "Payload Too Large", info)
            return
        handle_error(self, req, client, addr, exc)

    message.Message.set_body_reader = guarded_body_reader
    message.Request.parse, message.Message.parse_headers = guarded_parse, guarded_parse_headers
    sync.SyncWorker.handle = handle_with_timeout
    util.write_error = write_error
    base.Worker.handle_error = guarded_handle_error


def install():
    """Patch gunicorn and wrap seldon-core's app factories (before seldon-core starts its servers)."""
    from seldon_core import wrapper

    _patch_gunicorn()
    rest, metrics = wrapper.get_rest_microservice, wrapper.get_metrics_microservice
    wrapper.get_rest_microservice = lambda *a, **k: harden(rest(*a, **k))
    wrapper.get_metrics_microservice = lambda *a, **k: harden(metrics(*a, **k))


def bind_to(host: str):
    """Bind the REST and metrics servers to `host` (seldon-core binds 0.0.0.0: right in a pod,
    but on a workstation it would put the predictors, which have no auth, on the network)."""
    from seldon_core import gunicorn_utils

    load_config = gunicorn_utils.StandaloneApplication.load_config

    def load_config_on_host(self):
        if self.options.get("bind"):
            self.options["bind"] = f"{host}:{str(self.options['bind']).rsplit(':', 1)[1]}"
        load_config(self)

    gunicorn_utils.StandaloneApplication.load_config = load_config_on_host


def main(argv: list[str] | None = None):
    """seldon-core-microservice's command line, plus `--bind-host HOST` (default: all interfaces)."""
    import sys

    from seldon_core import microservice

    args = list(sys.argv[1:] if argv is None else argv)
    if "--bind-host" in args:
        at = args.index("--bind-host")
        bind_to(args[at + 1])
        del args[at : at + 2]
    sys.argv = [sys.argv[0], *args]
    install()
    microservice.main()


if __name__ == "__main__":
    main()

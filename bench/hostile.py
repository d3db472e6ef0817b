"""`make bench-hostile`: hostile requests against the ingress and a predictor, good ones beside them.

The catalogue (`catalogue()`) is raw bytes per request, sent over plain sockets so nothing in
between fixes them: authentication, body structure, values, names and shapes, every method on
every path, framing headers, raw protocol (garbage, TLS, pipelining, half-closed connections)
and admin bodies of every JSON type, each against the ingress and (where it has that path) a
predictor directly. `run()` sends them concurrently while good requests go through the ingress
and to the predictor, and judges every answer against the targets:
  - no response >= 500, except 503 with Retry-After (back-pressure, predictor unavailable);
  - every error a JSON body in Seldon's status format with an `info` naming what was wrong;
  - no dropped connection on a request that parses as HTTP;
  - good requests all 200; the service healthy afterwards; nothing of a refused request logged.
`tests/test_hostile_inputs.py` runs a representative subset (`subset()`) in `make test`.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import hashlib
import hmac
import http.client
import json
import os
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from seldon.examples import example_transaction

ROOT = Path(__file__).resolve().parents[1]
SECRET = "hostile-bench-secret-long-enough-for-hs256!"
DEPLOYMENT = "/seldon/default/fraud"
API = f"{DEPLOYMENT}/api/v1.0"
# Shapes every version of the component refuses (others, e.g. rows without names, it may read
# positionally in the metadata's order, as Seldon's own clients send them).
STRICT_SHAPES = (
    "names string",
    "names nested",
    "extra name",
    "missing name",
    "duplicated name",
    "names longer than rows",
    "ragged rows",
    "ndarray scalar",
    "ndarray string",
    "ndarray 3-D",
    "rows 20001",
    "tensor short values",
    "tensor long values",
    "tensor wrong width",
    "tensor negative",
    "tensor huge",
    "tensor int64 overflow",
    "tensor 3-D",
    "tensor string shape",
    "tensor values dict",
    "tensor not object",
    "jsonData 20001",
)
ANY = "any"  # expectation: any status below 500 (or 503 + Retry-After)
FOUR = "4xx"


@dataclass
class Case:
    category: str
    name: str
    target: str  # "ingress" | "predictor"
    raw: bytes
    expect: str | int = FOUR  # FOUR, ANY, or one status
    answers: int = 1  # pipelined requests: answers expected on the one connection
    half_close: bool = False  # shut our side down after sending (the server sees EOF)
    parseable: bool = True  # a request that parses as HTTP must get an answer
    head: bool = False  # a HEAD request: answers carry no body
    rid: str = ""  # the Seldon-Puid sent, to find it in the prediction log


@dataclass
class Outcome:
    case: Case
    statuses: list = field(default_factory=list)
    dropped: str = ""  # why no (complete) answer came
    retry_503: int = 0  # answers 503 with Retry-After (back-pressure, predictor or features unavailable)
    problems: list = field(default_factory=list)


# ------------------------------------------------------------ building requests
def http_request(method: str, path: str, headers=(), body: bytes | None = None, framing: bool = True) -> bytes:
    """Raw HTTP/1.1 bytes; `framing` adds Content-Length for the body (False: the headers say)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in (headers.items() if isinstance(headers, dict) else headers)]
    if framing and body is not None:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return "\r\n".join(lines).encode("latin-1", "surrogateescape") + b"\r\n\r\n" + (body or b"")


def b64(data: bytes | str) -> str:
    data = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(payload, header=None, secret: str | None = SECRET, signature: str | None = None) -> str:
    """A JWT built by hand (forged ones included): HS256 over `secret` unless `signature` is given."""
    head = b64(json.dumps(header or {"alg": "HS256", "typ": "JWT"}))
    body = b64(payload if isinstance(payload, (bytes, str)) else json.dumps(payload))
    if signature is None:
        signature = b64(hmac.new((secret or "").encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{signature}"


def claims(scope: str = "predict", ttl_s: int = 3600, **extra) -> dict:
    now = int(time.time())
    return {"sub": "hostile", "scope": scope, "iat": now, "exp": now + ttl_s, **extra}


PREDICT_TOKEN = ADMIN_TOKEN = ""  # set by `tokens()` (fresh expiry for each run)


def tokens():
    global PREDICT_TOKEN, ADMIN_TOKEN
    PREDICT_TOKEN, ADMIN_TOKEN = jwt(claims("predict")), jwt(claims("admin predict"))


def auth(token: str | None = None) -> dict:
    return {"Authorization": f"Bearer {token or PREDICT_TOKEN}"}


def sample(n: int = 2, seed: int = 0) -> tuple[list[str], list[list]]:
    sys.path.insert(0, str(ROOT))
    from testkit.artifacts import sample_rows

    return sample_rows(n, seed)


def client_hello() -> bytes:
    """The bytes a TLS client sends first (a real ClientHello from this Python's ssl module)."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with contextlib.suppress(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


# ------------------------------------------------------------ the catalogue
def _json(doc) -> bytes:
    return json.dumps(doc, allow_nan=True).encode()


def _post(target: str, path: str, body: bytes, headers=None, **kw) -> tuple[str, bytes]:
    h = {"Content-Type": "application/json", **(auth() if target == "ingress" else {}), **(headers or {})}
    return target, http_request("POST", path, h, body)


def _paths(target: str) -> dict[str, str]:
    return (
        {"predictions": f"{API}/predictions", "feedback": f"{API}/feedback"}
        if target == "ingress"
        else {"predictions": "/api/v1.0/predictions", "feedback": "/api/v1.0/feedback"}
    )


def catalogue() -> list[Case]:
    tokens()
    names, rows = sample(2)
    good = {"data": {"names": names, "ndarray": rows}}
    cases: list[Case] = []

    def add(category, name, target, raw, **kw):
        cases.append(Case(category, name, target, raw, **kw))

    # --- authentication (ingress only: predictors sit behind it)
    now = int(time.time())
    forged = {
        "no header": None,
        "empty bearer": "",
        "garbage": "abc",
        "three dots": "...",
        "not base64": "!!!.???.***",
        "wrong secret": jwt(claims(), secret="another-secret-another-secret-another!"),
        "bad signature": jwt(claims(), signature="AAAA"),
        "alg none": jwt(claims(), {"alg": "none", "typ": "JWT"}, signature=""),
        "alg None": jwt(claims(), {"alg": "None"}, signature=""),
        "alg none signed": jwt(claims(), {"alg": "none"}),
        "alg HS512": jwt(claims(), {"alg": "HS512"}),
        "alg RS256 with secret": jwt(claims(), {"alg": "RS256"}),
        "expired": jwt(claims(ttl_s=-60)),
        "no exp": jwt({"sub": "x", "scope": "predict admin"}),
        "exp string": jwt({**claims(), "exp": "tomorrow"}),
        "exp huge": jwt({**claims(), "exp": 10**30}),
        "exp float overflow": jwt(b'{"sub": "x", "scope": "predict admin", "exp": 1e999}'),
        "exp NaN": jwt(b'{"sub": "x", "scope": "predict admin", "exp": NaN}'),
        "nbf future": jwt(claims(nbf=now + 3600)),
        "wrong scope": jwt(claims("read")),
        "scope list": jwt({**claims(), "scope": ["predict", "admin"]}),
        "scope odd list": jwt({**claims(), "scope": [{"a": 1}, ["predict"], 3]}),
        "scope int": jwt({**claims(), "scope": 7}),
        "scp only": jwt({"sub": "x", "scp": "predict", "exp": now + 60}),
        "payload not object": jwt([1, 2, 3]),
        "payload not json": jwt(b"\xff\xfe"),
        "header not json": "e30." + b64("x") + ".sig",
        "oversized 10k": "x" * 10_000,
        "oversized 60k": jwt({**claims(), "pad": "p" * 45_000}),
        "non-ascii": "tökén.é.ü",
        "basic scheme": "Basic " + b64("user:pass"),
        "lowercase bearer": "bearer " + PREDICT_TOKEN,
        "double bearer": "Bearer Bearer " + PREDICT_TOKEN,
        "sub huge": jwt({**claims(), "sub": "s" * 5000}),
    }
    for what, tok in forged.items():
        if tok is None:
            h = {}
        elif tok.startswith(("Basic ", "bearer ", "Bearer ")):
            h = {"Authorization": tok}
        else:
            h = {"Authorization": f"Bearer {tok}"}
        ok_predict = what in ("scope list", "scp only", "sub huge", "exp huge")
        for path, method in (
            (f"{API}/predictions", "POST"),
            (f"{API}/metadata", "GET"),
            ("/metrics", "GET"),
            ("/admin/state", "GET"),
        ):
            body = _json(good) if method == "POST" else None
            expect = ANY if ok_predict else FOUR
            add("auth", f"{what} {method} {path}", "ingress", http_request(method, path, h, body), expect=expect)

    # --- body structure
    deep_list, deep_obj = b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000
    bodies = {
        "empty": b"",
        "whitespace": b"   \n",
        "not json": b"hello",
        "truncated": b'{"data": {"names": [',
        "invalid utf-8": b'{"data": "\xff\xfe\xfa"}',
        "utf-16": '{"data": {}}'.encode("utf-16"),
        "bom": b"\xef\xbb\xbf" + _json(good),
        "nested 1000": b"[" * 1000 + b"]" * 1000,
        "nested 100000 lists": deep_list,
        "nested 50000 objects": deep_obj,
        "nested data": _json({"data": {"names": names, "ndarray": [[[[[[1]]]]]]}}),
        "nested 900 in a message": b'{"request": {"jsonData": ' + b"[" * 900 + b"]" * 900 + b'}, "reward": 1}',
        "customData nested Any": _nested_any(300),
        "nested 90 in a message": b'{"request": {"jsonData": ' + b"[" * 90 + b"]" * 90 + b'}, "reward": 1}',
        "null": b"null",
        "true": b"true",
        "int": b"42",
        "float": b"4.2",
        "string": b'"text"',
        "list": b"[]",
        "list of objects": _json([good, good]),
        "object empty": b"{}",
        "data null": b'{"data": null}',
        "data int": b'{"data": 1}',
        "data list": b'{"data": []}',
        "data string": b'{"data": "x"}',
        "jsonData null": b'{"jsonData": null}',
        "jsonData string": b'{"jsonData": "x"}',
        "strData": b'{"strData": "hello"}',
        "binData": b'{"binData": "aGVsbG8="}',
        "binData not base64": b'{"binData": "!!!"}',
        "meta only": b'{"meta": {"puid": 1}}',
        "unknown key": b'{"foo": 1}',
        "duplicate keys": b'{"data": 1, "data": {"names": [], "ndarray": []}}',
        "trailing garbage": _json(good) + b"xyz",
        "two documents": _json(good) + _json(good),
        "NUL bytes": b"\x00" * 64,
        "big number": b"1" * 5000,
        "big exponent": b"1e999999",
    }
    for target in ("ingress", "predictor"):
        for op, path in _paths(target).items():
            for what, body in bodies.items():
                expect = ANY if what in ("bom", "object empty") else FOUR
                add("body", f"{op} {what}", target, _post(target, path, body)[1], expect=expect)
            ctypes = {
                "text/plain": "text/plain",
                "form": "application/x-www-form-urlencoded",
                "no content-type": None,
                "bogus": "application/json; charset=klingon",
            }
            for what, ctype in ctypes.items():
                h = {**(auth() if target == "ingress" else {}), **({"Content-Type": ctype} if ctype else {})}
                add("body", f"{op} content-type {what}", target, http_request("POST", path, h, _json(good)), expect=ANY)
            h = {**(auth() if target == "ingress" else {}), "Content-Type": "application/x-www-form-urlencoded"}
            for what, form in {
                "json= garbage": b"json=%7B%7B%7B",
                "json= deep": b"json=" + b"%5B" * 5000,
                "json= list": b"json=%5B1%2C2%5D",
                "json= empty": b"json=",
            }.items():
                add("body", f"{op} form {what}", target, http_request("POST", path, h, form))
            add("body", f"{op} query json= garbage", target, http_request("POST", path + "?json=%7B", h, b""))
            boundary = "xyzzy"
            multipart = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="data"\r\n\r\n{{not json\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="strData"; filename="a"\r\n\r\n\xff\xfe\r\n'
                f"--{boundary}--\r\n"
            ).encode("latin-1")
            mh = {
                **(auth() if target == "ingress" else {}),
                "Content-Type": f"multipart/form-data; boundary={boundary}",
            }
            add("body", f"{op} multipart bad fields", target, http_request("POST", path, mh, multipart))
            huge = _json({"data": {"names": names, "ndarray": [rows[0]] * 60_000}})
            add("body", f"{op} oversized body", target, _post(target, path, huge)[1])
            add(
                "body",
                f"{op} announced 1 TB",
                target,
                http_request("POST", path, {**h, "Content-Length": str(10**12)}, b"{}", framing=False),
                half_close=True,
            )

    # --- values
    bad_values = {
        "NaN": "NaN",
        "Infinity": "Infinity",
        "-Infinity": "-Infinity",
        "1e309": "1e309",
        "-1e309": "-1e309",
        "1e308": "1e308",
        "int64 max+1": str(2**63),
        "uint64 max+1": str(2**64),
        "int64 min-1": str(-(2**63) - 1),
        "10**30": str(10**30),
        "10**400": "1" + "0" * 400,
        "string number": '"12"',
        "NUL string": '"\\u0000"',
        "lone surrogate": '"\\ud800"',
        "emoji": '"\U0001f4a3"',
        "rtl override": '"\\u202egrocery"',
        "long string": json.dumps("s" * 10_000),
        "true": "true",
        "list": "[1]",
        "object": '{"a": 1}',
        "empty string": '""',
        "negative zero": "-0.0",
    }
    for target in ("ingress", "predictor"):
        path = _paths(target)["predictions"]
        for col in range(len(names)):
            for what, text in bad_values.items():
                row = [json.dumps(v) for v in rows[0]]
                row[col] = text
                raw = f'{{"data": {{"names": {json.dumps(names)}, "ndarray": [[{",".join(row)}]]}}}}'.encode()
                # some are fine for some columns (e.g. 1e308 or -0.0 as a number): no 5xx is the target
                add("values", f"{names[col]}={what}", target, _post(target, path, raw)[1], expect=ANY)
        txn = example_transaction("2026-10-05T08:00:00")
        odd = {
            "user_id": [2**63, 2**64, -(2**63) - 1, 10**30, -1, 1e20, 41.5, "41", None, True, [41], {"a": 1}],
            "merchant_id": [2**64, -(2**63) - 1, 1e300, "x", None, 6.5],
            "amount": [1e309, -1, 10**30, "12", None, True],
            "country": [1, None, "", "\u0000", "x" * 5000, ["FR"]],
            "event_ts": ["yesterday", "", "9999-99-99", 12, None, "2026-10-05T08:00:00+99:00", "\u0000"],
            "event_epoch_s": [10**30, -(10**30), "now", 1e309, None],
        }
        for key, values in odd.items():
            for v in values:
                doc = {**txn, key: v}
                if key == "event_epoch_s":
                    doc.pop("event_ts")
                add(
                    "values",
                    f"jsonData {key}={str(v)[:20]!s}",
                    target,
                    _post(target, path, _json({"jsonData": doc}))[1],
                    expect=ANY,
                )
        for key in ("user_id", "merchant_id"):
            for literal in ("NaN", "Infinity", "1e999", "18446744073709551616"):
                raw = _json({"jsonData": txn}).replace(f'"{key}": {txn[key]}'.encode(), f'"{key}": {literal}'.encode())
                add("values", f"jsonData {key}={literal}", target, _post(target, path, raw)[1], expect=ANY)

    # --- names and shapes
    width = len(names)
    flat = [v for r in rows for v in r]
    shapes = {
        "no names": {"data": {"ndarray": rows}},
        "names null": {"data": {"names": None, "ndarray": rows}},
        "names string": {"data": {"names": "category", "ndarray": rows}},
        "names ints": {"data": {"names": list(range(width)), "ndarray": rows}},
        "names nested": {"data": {"names": [names], "ndarray": rows}},
        "names empty": {"data": {"names": [], "ndarray": rows}},
        "extra name": {"data": {"names": [*names, "extra"], "ndarray": [r + [1] for r in rows]}},
        "missing name": {"data": {"names": names[1:], "ndarray": [r[1:] for r in rows]}},
        "duplicated name": {"data": {"names": [names[0], *names[:-1]], "ndarray": rows}},
        "names longer than rows": {"data": {"names": names, "ndarray": [r[:-1] for r in rows]}},
        "ragged rows": {"data": {"names": names, "ndarray": [rows[0], rows[1][:3]]}},
        "empty rows": {"data": {"names": names, "ndarray": [[], []]}},
        "no rows": {"data": {"names": names, "ndarray": []}},
        "ndarray scalar": {"data": {"names": names, "ndarray": 5}},
        "ndarray string": {"data": {"names": names, "ndarray": "rows"}},
        "ndarray flat": {"data": {"names": names, "ndarray": rows[0]}},
        "ndarray 3-D": {"data": {"names": names, "ndarray": [rows]}},
        "ndarray of objects": {"data": {"names": names, "ndarray": [{"a": 1}]}},
        "rows 20001": {"data": {"names": names, "ndarray": [rows[0]] * 20_001}},
        "tensor ok": {"data": {"names": names, "tensor": {"shape": [2, width], "values": flat}}},
        "tensor short values": {"data": {"names": names, "tensor": {"shape": [2, width], "values": flat[:-1]}}},
        "tensor long values": {"data": {"names": names, "tensor": {"shape": [2, width], "values": [*flat, 1]}}},
        "tensor wrong width": {"data": {"names": names, "tensor": {"shape": [1, 3], "values": [1, 2, 3]}}},
        "tensor negative": {"data": {"names": names, "tensor": {"shape": [-2, width], "values": flat}}},
        "tensor -1": {"data": {"names": names, "tensor": {"shape": [-1, width], "values": flat}}},
        "tensor huge": {"data": {"names": names, "tensor": {"shape": [10**12, width], "values": flat}}},
        "tensor int64 overflow": {"data": {"names": names, "tensor": {"shape": [2**64, width], "values": flat}}},
        "tensor zero": {"data": {"names": names, "tensor": {"shape": [0, width], "values": []}}},
        "tensor 1-D": {"data": {"names": names, "tensor": {"shape": [width], "values": flat[:width]}}},
        "tensor 3-D": {"data": {"names": names, "tensor": {"shape": [1, 2, width], "values": flat}}},
        "tensor float shape": {"data": {"names": names, "tensor": {"shape": [2.5, width], "values": flat}}},
        "tensor string shape": {"data": {"names": names, "tensor": {"shape": "x", "values": flat}}},
        "tensor no shape": {"data": {"names": names, "tensor": {"values": flat}}},
        "tensor values dict": {"data": {"names": names, "tensor": {"shape": [2, width], "values": {"a": 1}}}},
        "tensor values strings": {"data": {"names": names, "tensor": {"shape": [1, width], "values": ["x"] * width}}},
        "tensor not object": {"data": {"names": names, "tensor": [1, 2]}},
        "ndarray and tensor": {
            "data": {"names": names, "ndarray": rows, "tensor": {"shape": [2, width], "values": flat}}
        },
        "tftensor": {"data": {"names": names, "tftensor": {"dtype": "DT_FLOAT", "tensorShape": {}}}},
        "data and jsonData": {"data": {"names": names, "ndarray": rows}, "jsonData": {"user_id": 1}},
        "jsonData list of ints": {"jsonData": [1, 2]},
        "jsonData transactions not list": {"jsonData": {"transactions": 5}},
        "jsonData empty list": {"jsonData": []},
        "jsonData 20001": {"jsonData": [{"user_id": 1}] * 20_001},
        "jsonData missing fields": {"jsonData": {"amount": 1.0}},
        "jsonData extra fields": {"jsonData": {"user_id": 1, "merchant_id": 1, "amount": 1.0, "zzz": 1}},
    }
    for target in ("ingress", "predictor"):
        for op, path in _paths(target).items():
            for what, doc in shapes.items():
                expect = FOUR if what in STRICT_SHAPES and op == "predictions" else ANY
                add("shapes", f"{op} {what}", target, _post(target, path, _json(doc))[1], expect=expect)

    # --- every method on every path
    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "PROPFIND", "FOO"]
    ingress_paths = [
        "/",
        "/live",
        "/ready",
        "/metrics",
        "/admin/state",
        "/admin/traffic",
        "/admin/reload",
        "/admin/nope",
        f"{API}/predictions",
        f"{API}/feedback",
        f"{API}/metadata",
        f"{API}/health/status",
        f"{API}/predictions/",
        "/api/v1.0/predictions",
        "/seldon/other/fraud/api/v1.0/predictions",
        f"{DEPLOYMENT}/../../admin/state",
        f"{API}/predictions/../../../../metrics",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/..%2f..%2fadmin/state",
        "//admin/state",
        "/admin/state%00",
        "/\u00e9t\u00e9",
        f"{API}/predictions?" + "q=" + "x" * 8000,
        "/" + "a" * 8000,
        "*",
        "http://127.0.0.1/live",
    ]
    predictor_paths = [
        "/",
        "/predict",
        "/api/v1.0/predictions",
        "/api/v0.1/predictions",
        "/api/v1.0/feedback",
        "/send-feedback",
        "/transform-input",
        "/transform-output",
        "/route",
        "/aggregate",
        "/health/ping",
        "/health/status",
        "/api/v1.0/health/status",
        "/metadata",
        "/api/v1.0/metadata",
        "/seldon.json",
        "/nope",
        "/../../etc/passwd",
        "/static/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/api/v1.0/predictions?" + "q=" + "x" * 3000,
        "/" + "a" * 3000,
        "*",
    ]
    for target, paths in (("ingress", ingress_paths), ("predictor", predictor_paths)):
        for method in methods:
            for path in paths:
                body = _json(good) if method in ("POST", "PUT", "PATCH") else None
                h = {"Content-Type": "application/json", **(auth(ADMIN_TOKEN) if target == "ingress" else {})}
                raw = http_request(method, path, h, body)
                add("methods", f"{method} {path[:60]}", target, raw, expect=ANY, head=method == "HEAD")

    # --- headers and framing
    body = _json(good)
    for target in ("ingress", "predictor"):
        path = _paths(target)["predictions"]
        base = {"Content-Type": "application/json", **(auth() if target == "ingress" else {})}
        hl = list(base.items())

        def framed(extra, payload=body, hl=hl, path=path):
            return http_request("POST", path, hl + list(extra), payload, framing=False)

        n = str(len(body))
        framings = {
            "CL bigger than body (half-closed)": (framed([("Content-Length", str(len(body) + 50))]), True),
            "CL smaller than body": (framed([("Content-Length", str(len(body) - 10))]), False),
            "CL negative": (framed([("Content-Length", "-1")]), False),
            "CL plus sign": (framed([("Content-Length", "+" + n)]), False),
            "CL hex": (framed([("Content-Length", hex(len(body)))]), False),
            "CL list": (framed([("Content-Length", f"{n}, {n}")]), False),
            "CL twice same": (framed([("Content-Length", n), ("Content-Length", n)]), False),
            "CL twice different": (framed([("Content-Length", n), ("Content-Length", "5")]), False),
            "CL letters": (framed([("Content-Length", "abc")]), False),
            "CL huge": (framed([("Content-Length", "9" * 30)]), True),
            "CL empty": (framed([("Content-Length", "")]), False),
            "TE + CL (smuggling)": (framed([("Transfer-Encoding", "chunked"), ("Content-Length", n)]), False),
            "CL + TE (smuggling)": (framed([("Content-Length", n), ("Transfer-Encoding", "chunked")]), False),
            "TE gzip": (framed([("Transfer-Encoding", "gzip"), ("Content-Length", n)]), False),
            "TE chunked, gzip": (framed([("Transfer-Encoding", "chunked, gzip")], _chunked(body)), False),
            "TE xchunked": (framed([("Transfer-Encoding", "xchunked")], _chunked(body)), False),
            "TE twice": (
                framed([("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")], _chunked(body)),
                False,
            ),
            "chunked bad size": (
                framed([("Transfer-Encoding", "chunked")], b"zz\r\n" + body + b"\r\n0\r\n\r\n"),
                False,
            ),
            "chunked size overflow": (framed([("Transfer-Encoding", "chunked")], b"f" * 40 + b"\r\n" + body), True),
            "chunked no terminator (half-closed)": (
                framed([("Transfer-Encoding", "chunked")], b"%x\r\n" % len(body) + body),
                True,
            ),
            "chunked missing CRLF": (
                framed([("Transfer-Encoding", "chunked")], b"%x\r\n" % len(body) + body + b"XX0\r\n\r\n"),
                False,
            ),
            "obs-fold TE": (framed([("Content-Length", n), ("X-A", "1\r\n Transfer-Encoding: chunked")]), False),
            "obs-fold CL": (framed([("Content-Length", "\r\n " + n)]), False),
            "space before colon": (framed([("Content-Length ", n)]), False),
            "header without colon": (
                framed([("Content-Length", n), ("Broken header line", "")]).replace(
                    b"Broken header line: ", b"Broken header line"
                ),
                False,
            ),
            "NUL in header": (framed([("Content-Length", n), ("X-A", "a\x00b")]), False),
            "huge header 100k": (framed([("Content-Length", n), ("X-Big", "b" * 100_000)]), False),
            "200 headers": (framed([("Content-Length", n)] + [(f"X-{i}", "v") for i in range(200)]), False),
        }
        for what, (data, half) in framings.items():
            add("headers", what, target, data, expect=FOUR, half_close=half)
        fine = {
            "chunked body": framed([("Transfer-Encoding", "chunked")], _chunked(body)),
            "chunked with extension and trailer": framed(
                [("Transfer-Encoding", "chunked")],
                b"%x;ext=1\r\n" % len(body) + body + b"\r\n0\r\nX-Trailer: 1\r\n\r\n",
            ),
            "Expect 100-continue": framed([("Content-Length", n), ("Expect", "100-continue")]),
            "no Host": framed([("Content-Length", n)]).replace(b"Host: 127.0.0.1\r\n", b""),
            "two Hosts": framed([("Content-Length", n), ("Host", "evil.example")]),
            "Upgrade h2c": framed([("Content-Length", n), ("Upgrade", "h2c"), ("HTTP2-Settings", "AAMAAABkAAQAAP__")]),
            "odd Seldon-Predictor": framed([("Content-Length", n), ("Seldon-Predictor", "../../etc")]),
            "huge Seldon-Puid": framed([("Content-Length", n), ("Seldon-Puid", "p" * 5000)]),
            "Seldon-Puid control chars": framed([("Content-Length", n), ("Seldon-Puid", "a\x01b")]),
            "X-Forwarded-For spoof": framed([("Content-Length", n), ("X-Forwarded-For", "1.2.3.4, evil")]),
        }
        for what, data in fine.items():
            add("headers", what, target, data, expect=ANY)

    # --- raw protocol
    hello = client_hello()
    good_path = {"ingress": f"{API}/predictions", "predictor": "/api/v1.0/predictions"}
    for target in ("ingress", "predictor"):
        h = {"Content-Type": "application/json", **(auth() if target == "ingress" else {})}
        one = http_request("POST", good_path[target], h, body).replace(b"Connection: close\r\n", b"")
        last = http_request("POST", good_path[target], h, body)
        rawcases = {
            "garbage line": (b"hello there\r\n\r\n", 1, False, True),
            "binary garbage": (bytes(range(256)) * 4 + b"\r\n\r\n", 1, False, False),
            "TLS ClientHello": (hello, 1, False, False),
            "HTTP/2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 1, False, True),
            "HTTP/2.0 request line": (b"GET /live HTTP/2.0\r\n\r\n", 1, False, True),
            "HTTP/1.0 request": (b"GET /live HTTP/1.0\r\n\r\n", 1, False, True),
            "HTTP/0.9 request": (b"GET /live\r\n", 1, True, False),
            "lowercase version": (b"GET /live http/1.1\r\nHost: x\r\n\r\n", 1, False, True),
            "bare LF": (b"GET /live HTTP/1.1\nHost: x\nConnection: close\n\n", 1, False, True),
            "only CRLF": (b"\r\n\r\n", 1, True, False),
            "SSH banner": (b"SSH-2.0-OpenSSH_9.6\r\n", 1, True, False),
            "request line 70k": (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 1, False, True),
            "method with control char": (b"G\x01T /live HTTP/1.1\r\n\r\n", 1, False, True),
            "pipelined 3 good": (one + one + last, 3, False, True),
            "pipelined good bad good": (
                one + b"POST " + good_path[target].encode() + b" HTTP/1.1\r\nContent-Length: 2\r\n\r\n[]" + last,
                3,
                False,
                True,
            ),
            "half-closed after request": (last, 1, True, True),
            "half-closed mid headers": (last[:30], 1, True, False),
            "half-closed mid body": (last[: len(last) - 20], 1, True, True),
            "connect and close": (b"", 0, True, False),
        }
        for what, (data, answers, half, parseable) in rawcases.items():
            expect = 200 if what.startswith("half-closed after") else ANY
            add("raw", what, target, data, answers=answers, half_close=half, parseable=parseable, expect=expect)

    # --- admin endpoints with bodies of every JSON type
    admin_bodies = {
        "null": b"null",
        "true": b"true",
        "int": b"7",
        "string": b'"x"',
        "list": b"[1, 2]",
        "empty object": b"{}",
        "not json": b"{{",
        "deep": b"[" * 50_000,
        "weights null": b'{"weights": null}',
        "weights list": b'{"weights": [90, 10]}',
        "weights int": b'{"weights": 100}',
        "weights string values": b'{"weights": {"main": "90", "canary": "10"}}',
        "weights floats": b'{"weights": {"main": 90.0, "canary": 10.0}}',
        "weights bools": b'{"weights": {"main": true, "canary": false}}',
        "weights negative": b'{"weights": {"main": 110, "canary": -10}}',
        "weights over 100": b'{"weights": {"main": 101}}',
        "weights unknown": b'{"weights": {"nope": 100}}',
        "weights huge int": b'{"weights": {"main": 1' + b"0" * 400 + b"}}",
        "weights NaN": b'{"weights": {"main": NaN}}',
        "weights sum 99": b'{"weights": {"main": 69, "canary": 30}}',
        "weights nested": b'{"weights": {"main": {"x": 1}}}',
        "weights same as manifest": b'{"weights": {"main": 70, "canary": 30}}',
    }
    for path in ("/admin/traffic", "/admin/reload", "/admin/state", "/metrics"):
        for what, payload in admin_bodies.items():
            for method in ("POST", "PUT"):
                h = {**auth(ADMIN_TOKEN), "Content-Type": "application/json"}
                ok = (path == "/admin/reload" and method == "POST") or what == "weights same as manifest"
                add(
                    "admin",
                    f"{method} {path} {what}",
                    "ingress",
                    http_request(method, path, h, payload),
                    expect=ANY if ok else FOUR,
                )
    for i, case in enumerate(cases):  # every ingress request carries an id to look for in the log
        if case.target == "ingress" and case.raw.startswith(b"POST ") and b"Seldon-Puid" not in case.raw:
            case.rid = f"hostile-{i}"
            case.raw = case.raw.replace(
                b"Host: 127.0.0.1\r\n", f"Host: 127.0.0.1\r\nSeldon-Puid: {case.rid}\r\n".encode(), 1
            )
    return cases


def _nested_any(levels: int) -> bytes:
    """Feedback whose request's `customData` nests protobuf `Any` in `Any` (CVE-2026-0994's shape)."""
    any_type = '{"@type": "type.googleapis.com/google.protobuf.Any", "value": '
    inner = any_type * levels + '{"@type": "type.googleapis.com/google.protobuf.Empty"}' + "}" * levels
    return f'{{"request": {{"customData": {inner}}}, "reward": 1}}'.encode()


def _chunked(body: bytes) -> bytes:
    half = len(body) // 2
    return b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, body[:half], len(body) - half, body[half:])


def subset(cases: list[Case], per_category: int = 60) -> list[Case]:
    """A representative subset: every category, both targets, spread over each one's cases."""
    by = collections.defaultdict(list)
    for c in cases:
        by[(c.category, c.target)].append(c)
    out = []
    for group in by.values():
        step = max(1, len(group) // per_category)
        out += group[::step][:per_category]
    return out


# ------------------------------------------------------------ sending and judging
class _Unclosable:
    """The connection's one reader, shared by the answers to pipelined requests."""

    def __init__(self, fp):
        self._fp = fp

    def __getattr__(self, name):
        return getattr(self._fp, name)

    def close(self):
        pass


class _Sock:
    def __init__(self, fp):
        self._fp = _Unclosable(fp)

    def makefile(self, *_a, **_k):
        return self._fp


def send(case: Case, ports: dict[str, int], timeout_s: float = 20.0) -> Outcome:
    out = Outcome(case)
    try:
        sock = socket.create_connection(("127.0.0.1", ports[case.target]), timeout=timeout_s)
    except OSError as err:
        out.dropped = f"connect: {err}"
        return out
    with sock:
        try:
            sock.sendall(case.raw)
            if case.half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may answer and close before taking everything (e.g. 413): read its answer
        fp = sock.makefile("rb")
        for _ in range(max(case.answers, 1)):
            resp = http.client.HTTPResponse(_Sock(fp), method="HEAD" if case.head else "POST")  # type: ignore[arg-type]
            try:
                resp.begin()
                data = resp.read()
            except (http.client.RemoteDisconnected, ConnectionError) as err:
                if case.answers and not out.statuses:
                    out.dropped = type(err).__name__
                break
            except (http.client.HTTPException, OSError) as err:
                out.dropped = f"{type(err).__name__}: {str(err)[:80]}"
                break
            out.statuses.append(resp.status)
            out.retry_503 += resp.status == 503 and bool(resp.getheader("Retry-After"))
            _judge(out, resp, data)
            if resp.getheader("Connection", "").lower() == "close":
                break
    if case.answers == 0:
        out.dropped = ""
    elif not out.statuses and case.parseable and not out.dropped:
        out.dropped = "no answer"
    return out


def _judge(out: Outcome, resp: http.client.HTTPResponse, data: bytes):
    status, case = resp.status, out.case
    if status >= 500 and not (status == 503 and resp.getheader("Retry-After")):
        out.problems.append(f"server error {status}: {data[:200]!r}")
    if status >= 400 and not case.head:
        try:
            info = json.loads(data)["status"]["info"]
            if not isinstance(info, str) or not info:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            out.problems.append(f"error {status} without Seldon's JSON status: {data[:120]!r}")
    if case.expect == FOUR and len(out.statuses) == 1 and not 400 <= status < 500:
        out.problems.append(f"expected a 4xx, got {status}")
    if isinstance(case.expect, int) and status != case.expect:
        out.problems.append(f"expected {case.expect}, got {status}: {data[:120]!r}")


@dataclass
class Report:
    outcomes: list
    good: collections.Counter
    good_problems: list
    healthy: list  # problems found after the run
    logged_refused: list  # ids of refused requests found in the prediction log

    def table(self) -> str:
        rows: dict = {}
        for o in self.outcomes:
            r = rows.setdefault(
                (o.case.category, o.case.target),
                {"n": 0, "statuses": collections.Counter(), "5xx": 0, "503+RA": 0, "dropped": 0, "problems": 0},
            )
            r["n"] += max(o.case.answers, 1)
            r["statuses"].update(o.statuses)
            r["5xx"] += sum(1 for s in o.statuses if s >= 500) - o.retry_503
            r["503+RA"] += o.retry_503
            r["dropped"] += bool(o.dropped) and o.case.parseable
            r["problems"] += bool(o.problems)
        head = f"{'category':<9} {'target':<10} {'requests':>8} {'5xx':>4} {'503+RA':>6} {'dropped':>7} {'other':>5}"
        lines, total = [f"{head}  statuses (status x count)"], collections.Counter()
        for (cat, target), r in rows.items():
            seen = " ".join(f"{s}x{n}" for s, n in sorted(r["statuses"].items()))
            lines.append(
                f"{cat:<9} {target:<10} {r['n']:>8} {r['5xx']:>4} {r['503+RA']:>6} {r['dropped']:>7} "
                f"{r['problems']:>5}  {seen}"
            )
            total.update({k: r[k] for k in ("n", "5xx", "503+RA", "dropped", "problems")})
        lines.append(
            f"{'total':<20} {total['n']:>8} {total['5xx']:>4} {total['503+RA']:>6} {total['dropped']:>7} "
            f"{total['problems']:>5}"
        )
        lines.append("5xx: answers >= 500 but 503 with Retry-After (503+RA); other: answers missing their")
        lines.append("expectation (a 4xx where one is due; Seldon's JSON status with `info` on every error)")
        lines.append(f"good requests mixed in: {dict(self.good)}; problems: {len(self.good_problems)}")
        lines.append(f"healthy afterwards: {'yes' if not self.healthy else self.healthy}")
        lines.append(f"refused requests in the prediction log: {len(self.logged_refused)}")
        return "\n".join(lines)

    def failures(self) -> list[str]:
        out = [
            f"[{o.case.category}/{o.case.target}] {o.case.name}: {'; '.join(o.problems) or ''}"
            f"{' dropped: ' + o.dropped if o.dropped and o.case.parseable else ''}"
            for o in self.outcomes
            if o.problems or (o.dropped and o.case.parseable)
        ]
        return out + self.good_problems + self.healthy + [f"logged refused request {r}" for r in self.logged_refused]


def run(cases: list[Case], ports: dict[str, int], concurrency: int = 8, good_every_s: float = 0.0) -> tuple:
    """Send `cases` with `concurrency` connections while good requests go to both targets."""
    names, rows = sample(1, seed=3)
    good_body = _json({"data": {"names": names, "ndarray": rows}})
    stop, good, good_problems = threading.Event(), collections.Counter(), []

    def good_loop(target: str):
        path = f"{API}/predictions" if target == "ingress" else "/api/v1.0/predictions"
        i = 0
        while not stop.is_set():
            i += 1
            h = {
                "Content-Type": "application/json",
                "Seldon-Puid": f"good-{target}-{i}",
                **(auth() if target == "ingress" else {}),
            }
            out = send(Case("good", "good", target, http_request("POST", path, h, good_body), expect=200), ports)
            good[f"{target} {out.statuses[0] if out.statuses else 'dropped'}"] += 1
            if out.problems or out.dropped:
                good_problems.append(f"good request {target}: {out.problems or out.dropped}")
            time.sleep(good_every_s)

    goods = [threading.Thread(target=good_loop, args=(t,), daemon=True) for t in ("ingress", "predictor")]
    for t in goods:
        t.start()
    with ThreadPoolExecutor(concurrency) as pool:
        outcomes = list(pool.map(lambda c: send(c, ports), cases))
    stop.set()
    for t in goods:
        t.join(30)
    return outcomes, good, good_problems


def health(ports: dict[str, int]) -> list[str]:
    """The service after the run: ready, scoring, the predictor healthy."""
    problems = []
    names, rows = sample(2, seed=4)
    body = _json({"data": {"names": names, "ndarray": rows}})
    checks = [
        ("ingress", http_request("GET", "/ready"), 200),
        (
            "ingress",
            http_request("POST", f"{API}/predictions", {**auth(), "Content-Type": "application/json"}, body),
            200,
        ),
        ("predictor", http_request("GET", "/health/status"), 200),
        ("predictor", http_request("POST", "/api/v1.0/predictions", {"Content-Type": "application/json"}, body), 200),
    ]
    for target, raw, want in checks:
        out = send(Case("health", "health", target, raw, expect=want), ports)
        if out.problems or out.dropped:
            problems.append(f"after the run, {target}: {out.problems or out.dropped}")
    return problems


def logged_ids(lake: Path) -> set[str]:
    import pyarrow.parquet as pq

    files = list((lake / "prediction_log").glob("date=*/*.parquet"))
    if not files:
        return set()
    return set(pq.ParquetDataset(files).read(columns=["request_id"]).column("request_id").to_pylist())


def refused_in_log(outcomes: list[Outcome], lake: Path) -> list[str]:
    answered_200 = {o.case.rid for o in outcomes if o.case.rid and 200 in o.statuses}
    hostile = {o.case.rid for o in outcomes if o.case.rid}
    return sorted((logged_ids(lake) & hostile) - answered_200)


# ------------------------------------------------------------ a serving stack of its own
class Stack:
    """The local runtime (real seldon-core predictors, the ingress, the prediction log) in a tmp dir."""

    def __init__(self, root: Path, feast_repo: Path | None = None):
        sys.path.insert(0, str(ROOT))
        from resources.lake import Lake
        from resources.seldon_target import SeldonTarget
        from seldon import manifest as mf
        from seldon.runtime import free_port
        from testkit.artifacts import build_artifact

        os.environ["DRIFTLINE_INGRESS_JWT_SECRET"] = SECRET
        self.root, self.port = root, free_port()
        self.lake = root / "lake"
        self.target = SeldonTarget(
            serving_dir=str(root / "serving"),
            lake=Lake(root=str(self.lake)),
            feast_repo=str(feast_repo or root / "no-feast"),  # none: raw transactions answer 503
            ingress_url=f"http://127.0.0.1:{self.port}",
        )
        kw = {"workers": 1, "feast_url": self.target.feast_url if feast_repo else ""}
        preds = [
            mf.Predictor("main", "driftline-fraud", "1", str(build_artifact(root / "m1", "1", seed=0)), 70, **kw),
            mf.Predictor("canary", "driftline-fraud", "2", str(build_artifact(root / "m2", "2", seed=1)), 30, **kw),
        ]
        self.target.apply(mf.render("fraud", "default", preds, "driftline/serving:hostile"))
        self._wait()

    def _wait(self, timeout_s: float = 60.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            out = send(Case("x", "x", "ingress", http_request("GET", "/ready"), expect=200), {"ingress": self.port}, 2)
            if out.statuses == [200]:
                return
            time.sleep(0.2)
        raise TimeoutError("the ingress did not become ready")

    def ports(self) -> dict[str, int]:
        eps = json.loads((self.target.state_dir / "endpoints.json").read_text())["predictors"]
        return {"ingress": self.port, "predictor": int(eps["main"]["port"])}

    def restarts(self) -> int:
        eps = json.loads((self.target.state_dir / "endpoints.json").read_text())["predictors"]
        return sum(int(e.get("restarts", 0)) for e in eps.values())

    def stop(self):
        self.target.stop_runtime()


def main(argv=None) -> int:
    root = Path(tempfile.mkdtemp(prefix="driftline-hostile-"))
    t0 = time.monotonic()
    try:  # raw transactions (jsonData) then go through a real online lookup
        from bench.bench_serving import online_store

        feast_repo = online_store(root)
    except Exception as err:  # noqa: BLE001 - the rest of the suite does not need it
        print(f"no online store ({type(err).__name__}: {err}); raw transactions will answer 503")
        feast_repo = None
    stack = Stack(root, feast_repo)
    try:
        ports = stack.ports()
        cases = catalogue()
        print(
            f"{len(cases)} hostile requests ({sum(max(c.answers, 1) for c in cases)} answers expected) "
            f"against the ingress :{ports['ingress']} and a predictor :{ports['predictor']}"
        )
        outcomes, good, good_problems = run(cases, ports)
        healthy = health(ports)
        if stack.restarts():
            healthy.append(f"predictors restarted {stack.restarts()} times")
    finally:
        stack.stop()  # drains the prediction log
    report = Report(outcomes, good, good_problems, healthy, refused_in_log(outcomes, stack.lake))
    print(report.table())
    failures = report.failures()
    for f in failures[:80]:
        print("FAIL", f)
    print(f"{len(failures)} failures; {time.monotonic() - t0:.0f} s")
    shutil.rmtree(root, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

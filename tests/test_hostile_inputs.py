"""Hostile clients against a real local serving stack (the ingress, seldon-core predictors started
by the local runtime, the prediction log): a representative subset of `make bench-hostile`'s
catalogue (bench/hostile.py), request smuggling, and the framing rules both servers share
(seldon/http_guard.py). Everything on loopback, raw sockets, nothing mocked."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

import pytest

from bench import hostile
from seldon.http_guard import FramingError, body_framing, read_chunked
from testkit.serving import SERVING_PY

pytestmark = pytest.mark.skipif(not SERVING_PY.exists(), reason=".venv-serving is missing: run `make setup`")


# ------------------------------------------------------------ the framing rules, in-process
@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([("Transfer-Encoding", "chunked"), ("Content-Length", "5")], 400),
        ([("Content-Length", "5"), ("Transfer-Encoding", "chunked")], 400),
        ([("Content-Length", "5"), ("Content-Length", "5")], 400),
        ([("Content-Length", "5, 5")], 400),
        ([("Content-Length", "+5")], 400),
        ([("Content-Length", "-1")], 400),
        ([("Content-Length", "0x5")], 400),
        ([("Content-Length", "1_0")], 400),
        ([("Content-Length", "9" * 30)], 413),
        ([("Transfer-Encoding", "gzip")], 400),
        ([("Transfer-Encoding", "chunked, gzip")], 400),
        ([("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")], 400),
        ([("X-A", "1\r\n Transfer-Encoding: chunked")], 400),
        ([("Content-Length ", "5")], 400),
        ([("X-A", "a\x00b")], 400),
    ],
)
def test_ambiguous_or_malformed_framing_is_refused(headers, status):
    with pytest.raises(FramingError) as err:
        body_framing(headers, 1 << 20)
    assert err.value.status == status and err.value.message


def test_unambiguous_framing():
    assert body_framing([("Content-Length", "12")], 100) == 12
    assert body_framing([("Content-Length", " 12 ")], 100) == 12
    assert body_framing([("Transfer-Encoding", "Chunked")], 100) is None
    assert body_framing([("Host", "x")], 100) == 0


def test_chunked_decoding_is_strict_and_bounded():
    assert read_chunked(io.BytesIO(b"3\r\nabc\r\n2;x=1\r\nde\r\n0\r\nT: 1\r\n\r\n"), 100) == b"abcde"
    for bad in (b"zz\r\nabc\r\n0\r\n\r\n", b"3\r\nabcXX0\r\n\r\n", b"3\r\nab", b"3\r\nabc\r\n", b"f" * 40 + b"\r\n"):
        with pytest.raises(FramingError):
            read_chunked(io.BytesIO(bad), 100)
    with pytest.raises(FramingError) as err:
        read_chunked(io.BytesIO(b"65\r\n" + b"x" * 101 + b"\r\n0\r\n\r\n"), 100)
    assert err.value.status == 413


# ------------------------------------------------------------ against the running stack
@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = hostile.Stack(tmp_path_factory.mktemp("hostile"))
    yield s
    s.stop()


def _exchange(port: int, raw: bytes, half_close: bool = False) -> bytes:
    """Everything the server sends back until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(raw)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


def _smuggle(path: str, auth: dict) -> bytes:
    """TE + CL: a front reading the length would pass the 'chunked' tail on as a second request."""
    smuggled = b"GET /admin/state HTTP/1.1\r\nHost: x\r\n\r\n"
    body = b"0\r\n\r\n" + smuggled
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    head += [f"{k}: {v}" for k, v in auth.items()]
    head += [f"Content-Length: {len(body)}", "Transfer-Encoding: chunked"]
    return "\r\n".join(head).encode() + b"\r\n\r\n" + body


@pytest.mark.parametrize("target", ["ingress", "predictor"])
def test_request_smuggling_is_refused_and_the_connection_closed(stack, target):
    hostile.tokens()
    ports = stack.ports()
    path = f"{hostile.API}/predictions" if target == "ingress" else "/api/v1.0/predictions"
    answer = _exchange(ports[target], _smuggle(path, hostile.auth(hostile.ADMIN_TOKEN) if target == "ingress" else {}))
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert answer.count(b"HTTP/1.1 ") == 1  # the tail was never read as a request of its own
    status = json.loads(answer.split(b"\r\n\r\n", 1)[1])["status"]
    assert "Transfer-Encoding and Content-Length" in status["info"]


def test_cut_chunked_body_does_not_wedge_the_predictor(stack):
    """gunicorn 20.1.0's chunked reader spins forever when a chunk is cut short; the predictor's
    entry point decodes chunked bodies itself, so the one sync worker keeps serving."""
    ports = stack.ports()
    raw = b"POST /api/v1.0/predictions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{}{}{"
    assert _exchange(ports["predictor"], raw, half_close=True).startswith(b"HTTP/1.1 400 ")
    names, rows = hostile.sample(1)
    good = hostile.http_request(
        "POST",
        "/api/v1.0/predictions",
        {"Content-Type": "application/json"},
        hostile._json({"data": {"names": names, "ndarray": rows}}),
    )
    assert _exchange(ports["predictor"], good).startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("target", ["ingress", "predictor"])
def test_deeply_nested_feedback_is_refused_not_a_recursion_error(stack, target):
    """seldon-core parses feedback with protobuf's json_format.ParseDict, which recurses into a
    RecursionError (500) on nested `Any` (CVE-2026-0994) or ~900 levels of lists."""
    hostile.tokens()
    path = f"{hostile.API}/feedback" if target == "ingress" else "/api/v1.0/feedback"
    headers = {"Content-Type": "application/json", **(hostile.auth() if target == "ingress" else {})}
    deep_list = b'{"request": {"jsonData": ' + b"[" * 900 + b"]" * 900 + b'}, "reward": 1}'
    for body in (hostile._nested_any(300), deep_list):
        answer = _exchange(stack.ports()[target], hostile.http_request("POST", path, headers, body))
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:300]
        assert "nested" in json.loads(answer.split(b"\r\n\r\n", 1)[1])["status"]["info"]


def _listening_hosts(port: int) -> set[str]:
    """The IPv4 addresses a TCP port listens on (/proc/net/tcp: state 0A = LISTEN)."""
    hosts = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            hosts.add(".".join(str(b) for b in reversed(bytes.fromhex(addr))))
    return hosts


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux's /proc/net/tcp")
def test_local_predictors_listen_on_loopback_only(stack):
    """The predictors have no auth: locally only the ingress is the way in."""
    assert _listening_hosts(stack.ports()["predictor"]) == {"127.0.0.1"}


def test_hostile_subset_no_server_errors_and_nothing_refused_logged(stack):
    """Last in this module: it stops the stack to drain the prediction log before reading it."""
    cases = hostile.subset(hostile.catalogue(), per_category=25)
    assert len(cases) >= 300 and {c.category for c in cases} >= {
        "auth",
        "body",
        "values",
        "shapes",
        "methods",
        "headers",
        "raw",
        "admin",
    }
    ports = stack.ports()
    outcomes, good, good_problems = hostile.run(cases, ports, concurrency=4, good_every_s=0.01)
    healthy = hostile.health(ports)
    restarts = stack.restarts()
    stack.stop()
    report = hostile.Report(outcomes, good, good_problems, healthy, hostile.refused_in_log(outcomes, stack.lake))
    print(report.table())
    assert report.failures() == [], report.table()
    assert restarts == 0
    assert sum(good.values()) > 0 and all(k.endswith(" 200") for k in good), good
    ingress_errors = [o for o in outcomes if o.case.target == "ingress" and any(s >= 400 for s in o.statuses)]
    assert len(ingress_errors) > 100

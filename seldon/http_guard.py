"""Request framing both HTTP servers of the serving side agree on, and Seldon's error body.

Why: a request whose body length two parsers could read differently (Transfer-Encoding beside
Content-Length, two Content-Lengths, `+5`, `5, 5`, a folded header line) is how requests are
smuggled past a front server into the one behind it (gunicorn 20.1.0 reads such requests its
own way: CVE-2024-1135, CVE-2024-6827). The ingress and the predictors' entry point
(`seldon.http_predictor`) refuse them with 400 before a byte of the body is read; a chunked
body alone is decoded here, bounded, and relayed with a Content-Length.
"""

from __future__ import annotations

import re

from seldon.errors import HttpError

_DIGITS = re.compile(r"[0-9]+")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 5.1 field names
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,8})[ \t]*(?:;[^\r\n]*)?\r?\n")
MAX_BODY_BYTES = 8 << 20  # the ingress's and the predictors' bound on one request body
MAX_CHUNK_LINE = 1024
MAX_TRAILERS = 32


class FramingError(HttpError):
    """A request whose body length is ambiguous or malformed: always answered, then closed."""


def seldon_status(code: int, info: str, reason: str = "BAD_REQUEST") -> dict:
    """Seldon's failure body (`{"status": {"code", "info", "reason", "status": "FAILURE"}}`)."""
    return {"status": {"code": code, "info": info, "reason": reason, "status": "FAILURE"}}


def reason_for(code: int) -> str:
    return {
        400: "BAD_REQUEST",
        401: "UNAUTHENTICATED",
        403: "FORBIDDEN",
        404: "NOT_FOUND",
        405: "METHOD_NOT_ALLOWED",
        408: "REQUEST_TIMEOUT",
        411: "LENGTH_REQUIRED",
        413: "PAYLOAD_TOO_LARGE",
        414: "URI_TOO_LONG",
        431: "HEADERS_TOO_LARGE",
        503: "UNAVAILABLE",
        504: "TIMEOUT",
    }.get(code, "BAD_REQUEST" if code < 500 else "UNAVAILABLE")


def body_framing(headers: list[tuple[str, str]], max_body_bytes: int) -> int | None:
    """The body's length from the request's header fields (name, value) in order: a byte count,
    None for a chunked body, 0 for none. FramingError (400/413) for anything ambiguous."""
    lengths, codings = [], []
    for name, value in headers:
        if "\n" in value or "\r" in value:  # obs-fold: a continuation line (RFC 9112 5.2)
            raise FramingError(400, f"header {name[:40]!r} is folded over several lines (obs-fold)")
        if not _TOKEN.fullmatch(name):
            raise FramingError(400, f"header name {name[:40]!r} is not a token")
        if _CTL.search(value):
            raise FramingError(400, f"header {name[:40]!r} has a control character in its value")
        low = name.lower()
        if low == "content-length":
            lengths.append(value.strip())
        elif low == "transfer-encoding":
            codings += [c.strip().lower() for c in value.split(",")]
    if codings and lengths:
        raise FramingError(400, "Transfer-Encoding and Content-Length together (ambiguous framing)")
    if len(lengths) > 1:
        raise FramingError(400, "more than one Content-Length")
    if codings:
        if codings != ["chunked"]:
            raise FramingError(400, f"Transfer-Encoding {','.join(codings)!r}: only a single 'chunked' is accepted")
        return None
    if not lengths:
        return 0
    if not _DIGITS.fullmatch(lengths[0]):
        raise FramingError(400, f"Content-Length {lengths[0][:40]!r} is not a decimal byte count")
    n = int(lengths[0]) if len(lengths[0]) <= 18 else max_body_bytes + 1
    if n > max_body_bytes:
        raise FramingError(413, f"body of {n} bytes: at most {max_body_bytes}")
    return n


class UnreaderFile:
    """`readline`/`read` over gunicorn's Unreader (`read()`: the next bytes, b"" at EOF), so
    `read_chunked` decodes for gunicorn too; `give_back()` returns what was read beyond."""

    def __init__(self, unreader):
        self.unreader, self.buf = unreader, b""

    def _fill(self) -> bool:
        data = self.unreader.read()
        self.buf += data
        return bool(data)

    def readline(self, limit: int) -> bytes:
        while b"\n" not in self.buf and len(self.buf) < limit and self._fill():
            pass
        end = self.buf.find(b"\n", 0, limit)
        n = end + 1 if end >= 0 else min(limit, len(self.buf))
        line, self.buf = self.buf[:n], self.buf[n:]
        return line

    def read(self, n: int) -> bytes:
        while len(self.buf) < n and self._fill():
            pass
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def give_back(self):
        if self.buf:
            self.unreader.unread(self.buf)
            self.buf = b""


def read_exact(rfile, n: int) -> bytes:
    """`n` body bytes, or FramingError 400 if the client sent fewer and closed its side."""
    data = rfile.read(n) if n else b""
    if len(data) != n:
        raise FramingError(400, f"body ended after {len(data)} of the {n} bytes Content-Length announced")
    return data


def read_chunked(rfile, max_body_bytes: int) -> bytes:
    """A chunked body (RFC 9112 7.1), at most `max_body_bytes` decoded; trailers are read and dropped."""
    parts, total = [], 0
    while True:
        line = rfile.readline(MAX_CHUNK_LINE + 1)
        m = _CHUNK_SIZE.fullmatch(line)
        if not m:
            raise FramingError(400, f"bad chunk size line {line[:40]!r}")
        size = int(m.group(1), 16)
        if size == 0:
            break
        total += size
        if total > max_body_bytes:
            raise FramingError(413, f"chunked body over {max_body_bytes} bytes")
        parts.append(read_exact(rfile, size))
        if rfile.readline(3) not in (b"\r\n", b"\n"):
            raise FramingError(400, "chunk not followed by CRLF")
    for _ in range(MAX_TRAILERS + 1):
        line = rfile.readline(MAX_CHUNK_LINE + 1)
        if line in (b"\r\n", b"\n"):
            return b"".join(parts)
        if not line:
            raise FramingError(400, "chunked body ended without its last CRLF")
    raise FramingError(400, "too many trailer lines")

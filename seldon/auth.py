"""JWT bearer authentication for the ingress: HS256 secret or RS256 public key, scopes.

Verified tokens are cached until their expiry so the hot path pays one dict lookup; the
cache is keyed by a hash, and neither tokens nor keys are ever logged or echoed.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass

from seldon.errors import HttpError

PREDICT, ADMIN = "predict", "admin"
MAX_TOKEN_CHARS = 8192  # a driftline token is ~200; a bigger one is refused before any decoding


def mint_token(secret: str, scopes: str = PREDICT, subject: str = "tester", ttl_s: int = 3600, **claims) -> str:
    """The one place a driftline HS256 bearer token is minted (the canary controller's admin
    token, the `driftline` command, tests and benchmarks): claims `sub`, `scope` (space-separated
    scopes, as `Authenticator` and Istio read them), `iat`, `exp` = now + `ttl_s`, plus `claims`
    (e.g. aud, iss), which override those."""
    import jwt

    now = int(time.time())
    return jwt.encode(
        {"sub": subject, "scope": scopes, "iat": now, "exp": now + ttl_s, **claims}, secret, algorithm="HS256"
    )


class AuthError(HttpError):
    """An HTTP error raised by authentication."""


@dataclass(frozen=True)
class Principal:
    subject: str
    scopes: frozenset
    expires: float


class Authenticator:
    def __init__(
        self,
        hs256_secret: str | None = None,
        rs256_public_key: str | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        leeway_s: int = 0,
        cache_size: int = 10_000,
    ):
        if rs256_public_key:
            self._key, self._alg = rs256_public_key, "RS256"
        elif hs256_secret:
            self._key, self._alg = hs256_secret, "HS256"
        else:
            raise ValueError("the ingress needs a JWT HS256 secret or an RS256 public key")
        self.audience, self.issuer, self.leeway_s = audience, issuer, leeway_s
        self._cache: dict[bytes, Principal] = {}
        self._cache_size = cache_size
        self._lock = threading.Lock()

    @property
    def algorithm(self) -> str:
        return self._alg

    def __repr__(self) -> str:  # never show the key
        return f"Authenticator(algorithm={self._alg!r})"

    def authenticate(self, header: str | None, scope: str) -> Principal:
        """The caller's principal, or AuthError 401 (no/invalid token) / 403 (scope missing)."""
        if not header or not header.startswith("Bearer "):
            raise AuthError(401, "missing bearer token")
        token = header[7:].strip()
        if len(token) > MAX_TOKEN_CHARS:
            raise AuthError(401, f"bearer token over {MAX_TOKEN_CHARS} characters")
        key = hashlib.blake2b(token.encode(), digest_size=16).digest()
        principal = self._cache.get(key)
        if principal is None or principal.expires < time.time():
            principal = self._verify(token)
            with self._lock:
                if len(self._cache) >= self._cache_size:
                    self._cache.clear()
                self._cache[key] = principal
        if scope not in principal.scopes:
            raise AuthError(403, f"token lacks the scope {scope!r}")
        return principal

    def _verify(self, token: str) -> Principal:
        import jwt

        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self._alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp"], "verify_aud": bool(self.audience)},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError(401, "token expired") from None
        except jwt.InvalidTokenError as err:
            raise AuthError(401, f"invalid token ({type(err).__name__})") from None
        except (ValueError, TypeError, OverflowError, RecursionError) as err:  # odd claims, e.g. exp: 1e400
            raise AuthError(401, f"invalid token ({type(err).__name__})") from None
        raw = claims.get("scope", claims.get("scp", ""))
        items = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else []
        scopes = frozenset(s for s in items if isinstance(s, str))
        try:
            expires = float(claims["exp"]) + self.leeway_s
        except (TypeError, ValueError, OverflowError):
            raise AuthError(401, "invalid token (exp is not a number)") from None
        return Principal(str(claims.get("sub", ""))[:256], scopes, expires)

"""Bearer tokens for tests and benchmarks, minted by the one function the product uses."""

from __future__ import annotations


def token(secret: str, scopes: str = "predict", subject: str = "tester", ttl_s: int = 3600, **claims) -> str:
    """An HS256 JWT for `scopes` (space-separated), valid `ttl_s` seconds."""
    from seldon.auth import mint_token

    return mint_token(secret, scopes=scopes, subject=subject, ttl_s=ttl_s, **claims)

"""Credentials of the HTTP API: the bearer token."""

from __future__ import annotations

import hmac


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot be the server's token, or None: it must be visible ASCII without spaces,
    as an Authorization header carries it unchanged."""
    if not token:
        return "the token is empty"
    if not all("!" <= char <= "~" for char in token):
        return "the token must be printable ASCII without spaces"
    return None


def bearer_matches(header: str, token: str) -> bool:
    """Whether an Authorization header value is ``Bearer <token>``. Any header at all, however
    malformed (no scheme, another scheme, bytes that are not ASCII), is simply no match. The
    comparison is on bytes, in constant time: compare_digest refuses str with non-ASCII characters."""
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Header values arrive decoded as Latin-1, so every one encodes back to its bytes; surrogate
    # escapes cover any other str a caller hands in.
    return hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), token.encode("ascii"))

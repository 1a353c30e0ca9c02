"""Credentials of the HTTP API: the bearer token, and signed audio URLs.

An <audio> element cannot send an Authorization header, and the long-lived token must not travel in
a URL (it lands in history, server logs and Referer headers). So a client with the token asks for a
signed URL instead: the track id and an expiry time, signed with HMAC-SHA256 under a secret that
only this server process holds."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time


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


class AudioUrlSigner:
    """Signs and checks (track id, expiry) pairs. The secret is drawn when the server starts, so a
    restart (or a new token) voids every URL handed out before."""

    def __init__(self, lifetime_s: float, secret: bytes | None = None) -> None:
        self.lifetime_s = lifetime_s
        self._secret = secret or secrets.token_bytes(32)

    def _digest(self, track_id: int, expires: int) -> str:
        return hmac.new(self._secret, f"{track_id}:{expires}".encode(), hashlib.sha256).hexdigest()

    def sign(self, track_id: int, *, now: float | None = None) -> tuple[int, str]:
        """(expires, signature): a unix time and the hex signature of the track id with it."""
        expires = int((time.time() if now is None else now) + self.lifetime_s)
        return expires, self._digest(track_id, expires)

    def valid(self, track_id: int, expires: str | None, signature: str | None, *, now: float | None = None) -> bool:
        """Whether the query's ``expires`` and ``signature`` are this server's, for this track, and
        not expired. Anything malformed is simply not valid."""
        if not expires or not signature or not expires.isascii() or not expires.isdigit() or len(expires) > 12:
            return False
        when = int(expires)
        now = time.time() if now is None else now
        if not now <= when <= now + self.lifetime_s + 1:
            return False
        return hmac.compare_digest(signature.encode("utf-8", "surrogateescape"), self._digest(track_id, when).encode())

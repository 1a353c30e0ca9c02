"""The Subsonic server behind the pass-through: requests forwarded as they came and answers
streamed back as they come, clients' credentials checked with its ``ping``, and its songs read
page by page for the map."""

from __future__ import annotations

import hashlib
import time

import httpx
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from mertsearch.errors import MertSearchError

# Headers about one connection, not the message: never forwarded either way. Host names the
# pass-through; the upstream's own is set by httpx.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
}
CREDENTIALS = ("u", "p", "t", "s", "apiKey")
PAGE = 500  # songs per search3 request while syncing
SYNC_VERSION = "1.12.0"  # the protocol version the sync speaks (password auth; old servers accept it)
MAX_VERDICTS = 10_000


class UpstreamError(MertSearchError):
    """The Subsonic server refused a request of the sync, or could not be reached."""


class Upstream:
    def __init__(self, url: str, *, user: str, password: str, auth_cache_s: float = 60.0) -> None:
        self.rest = url.rstrip("/") + "/rest"
        self.user, self.password = user, password
        self.auth_cache_s = auth_cache_s
        # No read limit while streaming: a paused player stops reading, and so do we.
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None), follow_redirects=False)
        self._verdicts: dict[str, float] = {}  # credential digest -> accepted until (monotonic)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def send(self, request: Request, name: str, *, identity: bool = False) -> httpx.Response:
        """``request`` as the upstream's ``/rest/<name>``: method, query string, headers and body
        unchanged; the answer's body not yet read. ``identity`` asks for an uncompressed body
        (for an answer the pass-through rewrites)."""
        headers = [(k, v) for k, v in request.headers.raw if k.decode("latin-1").lower() not in HOP_BY_HOP]
        if identity:
            headers = [(k, v) for k, v in headers if k.lower() != b"accept-encoding"]
        url = f"{self.rest}/{name}" + (f"?{request.url.query}" if request.url.query else "")
        body = await request.body()
        outgoing = self.client.build_request(request.method, httpx.URL(url), headers=headers, content=body)
        return await self.client.send(outgoing, stream=True)

    async def forward(self, request: Request, name: str) -> Response:
        """The upstream's answer to ``request``, streamed through chunk by chunk as it arrives
        (a whole file is never held), with its status and headers."""
        try:
            answer = await self.send(request, name)
        except httpx.TransportError as exc:
            message = f"the Subsonic server cannot be reached: {type(exc).__name__}"
            return Response(message, status_code=502, headers={"X-Content-Type-Options": "nosniff"})

        async def chunks():
            try:
                async for chunk in answer.aiter_raw():
                    yield chunk
            finally:
                await answer.aclose()

        response = StreamingResponse(chunks(), status_code=answer.status_code)
        # Raw bytes go through as they came, so Content-Length and Content-Encoding stay true.
        # Date and Server are the pass-through's own (its server adds them): not sent twice.
        response.raw_headers = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in answer.headers.multi_items()
            if k.lower() not in HOP_BY_HOP | {"date", "server", "x-content-type-options"}
        ] + [(b"x-content-type-options", b"nosniff")]  # no answer is read as another type than it says
        return response

    async def accepts(self, params: dict[str, str], authorization: str | None) -> tuple[int, str] | None:
        """None when the upstream accepts these credentials (its ``ping``), else its error (code,
        message). Acceptance is remembered for ``auth_cache_s`` per credential set; a refusal
        is not, so a corrected password works at once."""
        digest = hashlib.sha256(repr(([params.get(n) for n in CREDENTIALS], authorization)).encode()).hexdigest()
        now = time.monotonic()
        if self._verdicts.get(digest, 0.0) > now:
            return None
        query = {n: params[n] for n in (*CREDENTIALS, "v", "c") if n in params}
        headers = {"authorization": authorization} if authorization else {}
        try:
            answer = await self.client.get(f"{self.rest}/ping", params={**query, "f": "json"}, headers=headers)
            inner = answer.json()["subsonic-response"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            return 0, f"the Subsonic server could not check the credentials: {type(exc).__name__}"
        if inner.get("status") == "ok":
            if len(self._verdicts) >= MAX_VERDICTS:
                self._verdicts = {k: until for k, until in self._verdicts.items() if until > now}
            self._verdicts[digest] = now + self.auth_cache_s
            return None
        error = inner.get("error") or {}
        return int(error.get("code", 0)), str(error.get("message", "the Subsonic server refused the credentials"))

    async def call(self, method: str, **params) -> dict:
        """One request of the pass-through's own account; the inner response on success."""
        auth = {
            "u": self.user,
            "p": "enc:" + self.password.encode("utf-8").hex(),
            "v": SYNC_VERSION,
            "c": "mertsearch",
            "f": "json",
        }
        try:
            answer = await self.client.get(f"{self.rest}/{method}", params={**auth, **params})
            inner = answer.json()["subsonic-response"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise UpstreamError(f"{method} on the Subsonic server failed: {type(exc).__name__}: {exc}") from exc
        if inner.get("status") != "ok":
            error = inner.get("error") or {}
            raise UpstreamError(f"{method} on the Subsonic server failed: {error.get('message')} ({error.get('code')})")
        return inner

    async def pages(self):
        """Every song the upstream lists, a search3 page (500) at a time, so that a sync holds one
        page, not the library. Servers differ on the query that matches everything: an empty one
        (Navidrome, Supysonic), or "" or * on others."""
        for query in ("", '""', "*"):
            offset = 0
            while True:
                page = await self.call(
                    "search3", query=query, songCount=PAGE, songOffset=offset, artistCount=0, albumCount=0
                )
                songs = (page.get("searchResult3") or {}).get("song") or []
                if songs:
                    yield songs
                if len(songs) < PAGE:
                    break
                offset += PAGE
            if offset or songs:
                return

    async def last_modified(self) -> int | None:
        """When the upstream's library last changed (its last scan, ms), as getIndexes says;
        None where it does not say (the sync then reads every song each time). Asked as
        "modified since a day from now?", so that the answer is the stamp alone, without the
        index."""
        since = int((time.time() + 86400) * 1000)
        try:
            stamp = (await self.call("getIndexes", ifModifiedSince=since)).get("indexes", {}).get("lastModified")
        except UpstreamError:
            return None
        # Some servers send 0 (no stamp kept): no change could ever be seen by it.
        known = isinstance(stamp, (int, float)) and not isinstance(stamp, bool) and stamp > 0
        return int(stamp) if known else None

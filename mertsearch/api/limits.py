"""Caps on request bodies and on uploads at once, enforced before the form parser reads a body.

The form parser spools an upload to disk as it reads it, before any endpoint could look at its size.
So the caps sit in front of it: a Content-Length over the cap is answered 413 before a byte of the
body is read, and a body streamed without one is cut (413) as soon as it passes the cap; nothing
beyond it reaches the parser, so nothing beyond it is written to disk. Likewise an upload beyond
those the decoders can take is answered 503 before its body is read: waiting, it would hold its
body and a thread.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: request bodies of at most ``max_bytes``."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, message: str) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.message = message

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._refuse(send)
            return
        received, over, started = 0, False, False

        async def limited_receive() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    over = True
                    raise BodyTooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if over and not started:
                # Whatever the app made of the cut body (the form parser's 400), the answer is this 413.
                if message["type"] == "http.response.start":
                    started = True
                    await self._refuse(send)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        await _answer_unread(send, 413, self.message)


class UploadGate:
    """ASGI middleware: at most ``max_uploads`` POST requests to ``path`` at once, from their first
    byte to their answer; one more is answered 503 with Retry-After, its body unread."""

    def __init__(self, app: ASGIApp, *, path: str, max_uploads: int, retry_after_s: int, message: str) -> None:
        self.app = app
        self.path = path
        self.max_uploads = max_uploads
        self.retry_after_s = retry_after_s
        self.message = message
        self.active = 0  # only the event loop's thread counts, so a plain int

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        if self.active >= self.max_uploads:
            await _answer_unread(send, 503, self.message, [(b"retry-after", str(self.retry_after_s).encode())])
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


async def _answer_unread(send: Send, status: int, message: str, headers: list | None = None) -> None:
    body = json.dumps({"status": status, "message": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or [])]
    # The rest of the body is not read: the server closes the connection after this answer.
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

"""A small Python client for a running `mertsearch serve`.

from mertsearch.client import Client

client = Client("http://127.0.0.1:8000", token=None)
for hit in client.search("clip.mp3", k=5):
    print(hit["score"], hit["artist"], hit["title"], hit["offset"])
client.similar(hit["track_id"], k=10, per_artist=1)

history = [hit["track_id"]]
while len(history) < 50:  # a radio: the next tracks, never one already played
    history += [t["track_id"] for t in client.radio(history, k=5)]
client.path(history[0], history[-1], count=8)
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlencode

import httpx

from mertsearch.errors import MertSearchError


class ApiError(MertSearchError, RuntimeError):
    """The server answered with an error; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class Client:
    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 120.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def _json(self, response: httpx.Response) -> dict:
        if response.status_code >= 400:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            raise ApiError(response.status_code, message)
        return response.json()

    def health(self) -> dict:
        return self._json(self._http.get("/health"))

    def info(self) -> dict:
        return self._json(self._http.get("/info"))

    def search(self, clip: str | os.PathLike | bytes, *, k: int = 10, **options) -> list[dict]:
        """Results for an audio clip (a path or the file's bytes). Options as `POST /search` takes them:
        start, end, mode, filter (a list of key=value), min_duration, ..., per_artist, per_album, min_score,
        min_similarity, and text (words that rank the clip's results again)."""
        if isinstance(clip, (bytes, bytearray)):
            name, data = "clip", bytes(clip)
        else:
            name, data = Path(clip).name, Path(clip).read_bytes()
        form = {"k": str(k), **{key: _form_value(value) for key, value in options.items() if value is not None}}
        response = self._http.post("/search", files={"file": (name, data)}, data=form)
        return self._json(response)["results"]

    def search_text(self, text: str, *, k: int = 10, **options) -> list[dict]:
        """Tracks that fit a description in words (a catalog with text search); ``options`` as for
        :meth:`search`, but no ``mode``. A clip with words: :meth:`search` with ``text=``."""
        params = {"text": text, "k": k, **_params(options)}
        return self._json(self._http.get("/search", params=params))["results"]

    def similar(self, track_id: int, *, k: int = 10, **options) -> list[dict]:
        params = {"k": k, **{key: value for key, value in options.items() if value is not None}}
        return self._json(self._http.get(f"/tracks/{int(track_id)}/similar", params=params))["results"]

    def radio(self, history: list[int], *, k: int = 10, **options) -> list[dict]:
        """The next ``k`` tracks after ``history`` (track ids, oldest first); options as `GET /radio`
        takes them (exclude, no_repeat_artist, per_artist, shuffle, seed, filter, ...)."""
        params = {"history": [int(t) for t in history], "k": k, **_params(options)}
        return self._json(self._http.get("/radio", params=params))["results"]

    def path(self, start: int, end: int, *, count: int = 10, **options) -> list[dict]:
        """A song path of ``count`` tracks from ``start`` to ``end``; options as `GET /path` takes them."""
        params = {"start": int(start), "end": int(end), "count": count, **_params(options)}
        return self._json(self._http.get("/path", params=params))["results"]

    def track(self, track_id: int) -> dict:
        return self._json(self._http.get(f"/tracks/{int(track_id)}"))

    def tracks(self, q: str = "", *, limit: int = 50, offset: int = 0) -> dict:
        return self._json(self._http.get("/tracks", params={"q": q, "limit": limit, "offset": offset}))

    def audio_url(self, track_id: int) -> str:
        """A URL a player can stream (and seek in) directly. With a token, a signed URL that the
        server hands out (valid for an hour by default): the token itself never goes in a URL."""
        path = f"{self.base_url}/tracks/{int(track_id)}/audio"
        if not self.token:
            return path
        signed = self._json(self._http.get(f"/tracks/{int(track_id)}/audio-url"))
        return f"{path}?{urlencode({'expires': signed['expires'], 'signature': signed['signature']})}"


def _params(options: dict) -> dict:
    """Query parameters from keyword options, None left out (httpx repeats a list's items)."""
    return {key: value for key, value in options.items() if value is not None}


def _form_value(value):
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else str(value)

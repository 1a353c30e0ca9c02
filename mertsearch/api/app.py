"""The HTTP API: search by uploaded clip, similar tracks, track metadata and audio, catalog info.

Every error is JSON ``{"status": code, "message": text}``. The model loads once, at start; one
lock serialises the model and FAISS work so concurrent requests are safe, while metadata
requests run side by side. Requests that wait for that lock or for a decoder wait in threads of
their own, never in the pool that /health, audio, metadata and the page run in; uploads beyond
what the decoders can take get 503 before their body is read.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import mimetypes
import os
import socket
import threading
from collections.abc import Callable
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

import anyio
from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from mertsearch.api import journeys
from mertsearch.api import text as text_routes
from mertsearch.api.auth import AudioUrlSigner, bearer_matches, token_problem
from mertsearch.api.decoding import Decode, DecodersBusy, UploadDecoders, decode_upload
from mertsearch.api.errors import ApiError
from mertsearch.api.files import FileRefused, IndexedFolders, OpenFileResponse, open_indexed
from mertsearch.api.limits import BodyLimit, UploadGate
from mertsearch.catalog import Catalog
from mertsearch.encoder.text_features import MAX_TEXT_CHARS
from mertsearch.errors import (
    AudioDecodeError,
    AudioTooLongError,
    CatalogMismatchError,
    DatabaseError,
    InvalidArgumentError,
    MertSearchError,
    ModelLoadError,
    TrackNotFoundError,
    VectorStoreError,
)
from mertsearch.search.options import SearchOptions
from mertsearch.subsonic import PassThrough, SubsonicSettings

STATIC = Path(__file__).parent / "static"
_STATUS = [
    (TrackNotFoundError, 404),
    (AudioTooLongError, 413),
    (AudioDecodeError, 422),
    (InvalidArgumentError, 422),
    (CatalogMismatchError, 409),
    (ModelLoadError, 503),
    (DatabaseError, 503),
    (VectorStoreError, 503),
]
# The catalog's database or vector store cannot be reached or used now (a server down, a file gone,
# a pool with no free connection): the same request may work later, so 503 with Retry-After.
OUTAGES = (DatabaseError, VectorStoreError, OperationalError, PoolTimeoutError)
# Seconds a client is told to wait before it tries again, after an outage or a busy server.
RETRY_AFTER_S = 10


@dataclass
class Settings:
    catalog: Path
    token: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    max_upload_bytes: int = 50 * 2**20
    max_clip_seconds: float = 600.0
    audio_url_seconds: float = 3600.0  # how long a signed audio URL stays valid
    model: str | None = None
    device: str | None = None
    precision: str | None = None  # None: $MERTSEARCH_PRECISION, else auto
    decoders: int = 2  # worker processes that decode uploads
    upload_wait_s: float = 30.0  # the longest an upload waits for a free decoder (then 503)
    decode_upload: Decode = decode_upload  # what they run (a module-level function)
    subsonic: SubsonicSettings | None = None  # a Subsonic server to pass /rest/* through to

    def __post_init__(self) -> None:
        problem = None if self.token is None else token_problem(self.token)
        if problem:
            raise InvalidArgumentError(problem)


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` stays on loopback: every address it resolves to is a loopback one.
    An empty host is every interface to the server, as are 0.0.0.0 and ::; a name that does not resolve
    is not loopback."""
    if not host:
        return False
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except (OSError, ValueError):  # unknown name, bad characters
        return False
    return bool(addresses) and all(ipaddress.ip_address(address).is_loopback for address in addresses)


# Room in a request body for the multipart boundaries, part headers and form fields around the file.
FORM_OVERHEAD_BYTES = 64 * 1024

# The largest 64-bit integer (SQLite's INTEGER, PostgreSQL's BIGINT ids): a bigger id or offset is a 422,
# not an overflow deep in the database.
SQL_INT_MAX = 2**63 - 1
TrackId = Annotated[int, PathParam(ge=1, le=SQL_INT_MAX, description="A track's id.")]


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII characters escaped, so a file name that is not valid UTF-8 (held as
    surrogate escapes) is sent as \\udcXX escapes instead of failing the response."""

    def render(self, content) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return AsciiJSONResponse({"status": status, "message": message}, status_code=status, headers=headers)


def create_app(settings: Settings) -> FastAPI:
    state: dict = {}
    lock = threading.Lock()
    # Uploads at once, from their first byte to their answer. Per decoder: one decoding, one waiting for
    # it, and two decoded, waiting for the model (a search takes it for a fraction of a second), so a
    # short burst queues instead of being refused; more would only wait longer, each holding its body
    # (up to max_upload_bytes) and its samples.
    max_uploads = 4 * settings.decoders
    signer = AudioUrlSigner(settings.audio_url_seconds)
    # New music the pass-through indexes is embedded as this server embeds clips.
    index_options = [
        f"--{name}={value}"
        for name, value in [("model", settings.model), ("device", settings.device), ("precision", settings.precision)]
        if value
    ]
    passthrough = settings.subsonic and PassThrough(settings.subsonic, lambda: state["catalog"], lock, index_options)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        # The workers start (and import the decoder) before the model loads, and while it does.
        decoders = UploadDecoders(
            workers=settings.decoders, decode=settings.decode_upload, wait_s=settings.upload_wait_s
        )
        # Threads for the requests that wait on the lock or on a decoder: every upload let in, and two
        # for the other searches (one holds the lock, one is next). However many more come, they wait
        # without a thread, and anyio's shared pool keeps its threads for everything else.
        state["heavy"] = anyio.CapacityLimiter(max_uploads + 2)
        try:
            catalog = Catalog.open(
                settings.catalog, model=settings.model, device=settings.device, precision=settings.precision, mmap=True
            )
            try:
                catalog.indexes.load()
                try:
                    catalog.encoder  # noqa: B018 - load the model once, before the first request
                except MertSearchError as exc:  # the page and metadata still work; /search says why not
                    state["model_error"] = str(exc)
                if catalog.manifest.text is not None:
                    try:  # CLaMP 3 and the text index, before the first words come
                        catalog.text_model  # noqa: B018
                        catalog.text_index.current()
                    except MertSearchError as exc:
                        state["text_error"] = str(exc)
                state["catalog"], state["decoders"] = catalog, decoders
                # Resolved now, so a link put in a folder's place later cannot lead audio elsewhere.
                state["folders"] = IndexedFolders(path for _, path in catalog.store.paths_under([""]))
                async with passthrough.running() if passthrough else nullcontext():
                    yield
            finally:
                catalog.close()
        finally:
            decoders.close()

    app = FastAPI(
        title="mertsearch",
        summary="Music similarity search over a catalog indexed with a MERT model.",
        version=__import__("mertsearch").__version__,
        lifespan=lifespan,
        default_response_class=AsciiJSONResponse,
    )
    # Before the form parser, which spools uploads to disk as it reads them.
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_upload_bytes + FORM_OVERHEAD_BYTES,
        message=f"upload larger than {settings.max_upload_bytes} bytes",
    )
    app.add_middleware(
        UploadGate,
        path="/search",
        max_uploads=max_uploads,
        retry_after_s=RETRY_AFTER_S,
        message=f"the server is decoding as many uploads as it takes at once ({max_uploads}); try again later",
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"], allow_headers=["*"]
        )

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else exc.headers
        return _error(exc.status, exc.message, headers)

    @app.exception_handler(MertSearchError)
    async def known_error(_request: Request, exc: MertSearchError) -> JSONResponse:
        status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 400)
        return _error(status, str(exc), {"Retry-After": str(RETRY_AFTER_S)} if isinstance(exc, OUTAGES) else None)

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeoutError)
    async def database_outage(_request: Request, exc: Exception) -> JSONResponse:
        # The driver's text may name hosts and paths, and /health answers without a token: the kind only.
        message = f"the catalog's database is unavailable ({type(exc).__name__}); try again later"
        return _error(503, message, {"Retry-After": str(RETRY_AFTER_S)})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'][1:]) or 'request'}: {error['msg']}" for error in exc.errors()
        )
        return _error(422, f"invalid request: {problems}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"internal error: {type(exc).__name__}")

    def authorised(request: Request) -> None:
        if settings.token is None:
            return
        if not bearer_matches(request.headers.get("authorization", ""), settings.token):
            raise ApiError(401, "a valid bearer token is required (Authorization: Bearer TOKEN)")

    def audio_authorised(request: Request, track_id: TrackId) -> None:
        """The token, or a signed URL for this very track that has not expired."""
        query = request.query_params
        if settings.token is None or signer.valid(track_id, query.get("expires"), query.get("signature")):
            return
        if not bearer_matches(request.headers.get("authorization", ""), settings.token):
            raise ApiError(401, "a valid bearer token or an unexpired signed URL (GET .../audio-url) is required")

    def catalog() -> Catalog:
        return state["catalog"]

    def heavy(endpoint: Callable) -> Callable:
        """``endpoint`` (a plain function that waits on the lock or a decoder) run in the threads kept
        for such work, not in anyio's shared pool: were those threads all waiting on the lock, /health
        and audio would wait too."""

        @functools.wraps(endpoint)  # FastAPI reads the parameters through it
        async def run(*args, **kwargs):
            work = functools.partial(endpoint, *args, **kwargs)
            return await anyio.to_thread.run_sync(work, limiter=state["heavy"])

        return run

    Auth = Depends(authorised)

    @app.get("/health", summary="Liveness: the catalog is open (the track count only with the token)")
    def health(request: Request) -> dict:
        answer = {"status": "ok", "model": "model_error" not in state}
        if settings.token is None or bearer_matches(request.headers.get("authorization", ""), settings.token):
            answer["tracks"] = catalog().store.count("tracks")
            if passthrough:
                answer["subsonic"] = passthrough.status()
        return answer

    @app.get("/info", dependencies=[Auth], summary="What the catalog holds and how it was built")
    @heavy
    def info() -> dict:
        with lock:
            return catalog().info()

    @app.post("/search", dependencies=[Auth], summary="Tracks most similar to an uploaded audio clip")
    @heavy
    def search(
        file: Annotated[UploadFile, File(description="An audio file (wav, flac, mp3, ogg, opus, m4a...)")],
        k: Annotated[int, Form(ge=1, le=1000)] = 10,
        start: Annotated[float | None, Form(ge=0, allow_inf_nan=False)] = None,
        end: Annotated[float | None, Form(gt=0, allow_inf_nan=False)] = None,
        mode: Annotated[str, Form(pattern="^(segments|tracks)$")] = "segments",
        filter_: Annotated[list[str] | None, Form(alias="filter")] = None,
        min_duration: Annotated[float | None, Form(ge=0, allow_inf_nan=False)] = None,
        max_duration: Annotated[float | None, Form(ge=0, allow_inf_nan=False)] = None,
        min_year: Annotated[int | None, Form(ge=-9999, le=9999)] = None,
        max_year: Annotated[int | None, Form(ge=-9999, le=9999)] = None,
        per_artist: Annotated[int | None, Form(ge=1, le=1000)] = None,
        per_album: Annotated[int | None, Form(ge=1, le=1000)] = None,
        min_score: Annotated[float | None, Form(allow_inf_nan=False)] = None,
        min_similarity: Annotated[float | None, Form(ge=0, le=1, allow_inf_nan=False)] = None,
        text: Annotated[
            str | None,
            Form(max_length=MAX_TEXT_CHARS, description="Words too: the clip's results ranked again by them"),
        ] = None,
    ) -> dict:
        if "model_error" in state:
            raise ApiError(503, f"search by audio is unavailable: {state['model_error']}")
        data = file.file.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise ApiError(413, f"upload larger than {settings.max_upload_bytes} bytes")
        if not data:
            raise ApiError(400, "empty upload")
        options = SearchOptions.parse(
            filter_,
            min_duration=min_duration,
            max_duration=max_duration,
            min_year=min_year,
            max_year=max_year,
            k=k,
            mode=mode,
            per_artist=per_artist,
            per_album=per_album,
            min_score=min_score,
            min_similarity=min_similarity,
        )
        cat = catalog()
        # In a worker process and outside the lock: a slow or crashing decode holds up no search.
        try:
            samples = state["decoders"].decode(
                data, sample_rate=cat.encoder.sample_rate, start=start, end=end, max_seconds=settings.max_clip_seconds
            )
        except DecodersBusy as exc:
            raise ApiError(503, f"{exc}; try again later", {"Retry-After": str(RETRY_AFTER_S)}) from None
        if text is not None and "text_error" in state:
            raise ApiError(503, f"search by words is unavailable: {state['text_error']}")
        with lock:
            clip = (samples, cat.encoder.sample_rate)
            results = cat.search(clip, options) if text is None else cat.search_text(text, options, clip=clip)
        answer = {"results": [r.as_dict() for r in results], "partial": results.partial}
        if cat.sampled_note:
            answer["note"] = cat.sampled_note
        return answer

    @app.get("/tracks/{track_id}/similar", dependencies=[Auth], summary="Tracks most similar to a catalog track")
    @heavy
    def similar(
        track_id: TrackId,
        k: Annotated[int, Query(ge=1, le=1000)] = 10,
        mode: Annotated[str, Query(pattern="^(segments|tracks)$")] = "tracks",
        filter_: Annotated[list[str] | None, Query(alias="filter")] = None,
        min_duration: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
        max_duration: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
        min_year: Annotated[int | None, Query(ge=-9999, le=9999)] = None,
        max_year: Annotated[int | None, Query(ge=-9999, le=9999)] = None,
        per_artist: Annotated[int | None, Query(ge=1, le=1000)] = None,
        per_album: Annotated[int | None, Query(ge=1, le=1000)] = None,
        exclude_seed_artist: bool = False,
        min_score: Annotated[float | None, Query(allow_inf_nan=False)] = None,
        min_similarity: Annotated[float | None, Query(ge=0, le=1, allow_inf_nan=False)] = None,
        exclude: journeys.Exclude = None,
        no_repeat_artist: journeys.NoRepeat = None,
        no_repeat_album: journeys.NoRepeat = None,
        shuffle: journeys.Shuffle = 0.0,
        seed: journeys.Seed = None,
    ) -> dict:
        options = SearchOptions.parse(
            filter_,
            min_duration=min_duration,
            max_duration=max_duration,
            min_year=min_year,
            max_year=max_year,
            k=k,
            mode=mode,
            per_artist=per_artist,
            per_album=per_album,
            exclude_seed_artist=exclude_seed_artist,
            min_score=min_score,
            min_similarity=min_similarity,
            exclude=tuple(exclude or ()),
            no_repeat_artist=no_repeat_artist,
            no_repeat_album=no_repeat_album,
            shuffle=shuffle,
            seed=seed,
        )
        with lock:
            results = catalog().similar(track_id, options)
        return {"results": [r.as_dict() for r in results], "partial": results.partial}

    @app.get("/tracks/{track_id}", dependencies=[Auth], summary="One track's metadata")
    def track(track_id: TrackId) -> dict:
        return catalog().track(track_id)

    @app.get("/tracks", dependencies=[Auth], summary="Find tracks by title, artist, album or path")
    def tracks(
        q: str = "",
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=SQL_INT_MAX)] = 0,
    ) -> dict:
        return catalog().find_tracks(q, limit=limit, offset=offset)

    @app.get("/tracks/{track_id}/audio-url", dependencies=[Auth], summary="A short-lived signed URL of the audio")
    def audio_url(track_id: TrackId) -> dict:
        catalog().track(track_id)  # 404 for an unknown track
        expires, signature = signer.sign(track_id)
        query = urlencode({"expires": expires, "signature": signature})
        return {"url": f"tracks/{track_id}/audio?{query}", "expires": expires, "signature": signature}

    @app.get(
        "/tracks/{track_id}/audio",
        dependencies=[Depends(audio_authorised)],
        summary="The track's audio file (range requests); the token or a signed URL",
    )
    def audio(
        track_id: TrackId,
        expires: Annotated[str | None, Query(max_length=32, description="From GET .../audio-url")] = None,
        signature: Annotated[str | None, Query(max_length=128, description="From GET .../audio-url")] = None,
    ) -> OpenFileResponse:
        row = catalog().store.tracks_by_id([track_id]).get(track_id)
        if row is None:
            raise ApiError(404, f"no track with id {track_id}")
        folders = state["folders"]
        folders.add([row.path])  # a folder indexed since the server started
        try:
            file, info = open_indexed(row.path, size=row.size, mtime_ns=row.mtime_ns, folders=folders)
        except FileRefused as exc:
            raise ApiError(exc.status, f"track {track_id}: {exc.reason}") from None
        name = os.path.basename(row.path)
        media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        # The header needs text: bytes of a name that are not UTF-8 become U+FFFD there.
        shown = os.fsencode(name).decode("utf-8", "replace")
        return OpenFileResponse(file, info, name=shown, media_type=media_type)

    journeys.add_routes(app, catalog, lock, Auth, heavy)
    text_routes.add_routes(app, catalog, lock, Auth, heavy, lambda: state.get("text_error"))
    if passthrough:
        passthrough.add_routes(app)
    app.mount("/", StaticFiles(directory=STATIC, html=True), name="page")
    return app

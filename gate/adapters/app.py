"""The OpenAI-compatible HTTP server: point any OpenAI-client app at the gate.

`create_app` takes a ready Gate (tests pass the real one; `serve` builds it once), so the app itself loads
nothing and every request goes through the same single queue in front of the one model instance.
Bodies above `server.max_body_bytes` get 413 before they are read; CORS is on only for the origins in
`server.cors_origins`.
"""
from __future__ import annotations

import hmac
import json
import logging
import socket
import threading
import time
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, AsyncIterator, Awaitable, Callable, Iterator, TypeVar

import anyio
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from gate.adapters import errors, openapi
from gate.adapters.errors import APIError
from gate.adapters.limits import BodyLimit, check_budget, require_json
from gate.adapters.request import ChatCompletionRequest
from gate.adapters.runner import Turn, TurnRunner
from gate.adapters.types import (ChatCompletion, ChatCompletionChunk, ChunkChoice, DeltaMessage, ErrorBody, GateInfo,
                                 Health, ModelCard, ModelList, Usage, finish_reason)
from gate.config import Settings
from gate.turns import Delta, GateView, TurnError, TurnResult

if TYPE_CHECKING:  # the pipeline imports torch; the app itself never needs to
    from gate.pipeline import Gate

log = logging.getLogger(__name__)
T = TypeVar("T")


class ClientGone(Exception):
    """The client hung up before its answer was ready."""


async def unless_gone(request: Request, work: Callable[[], Awaitable[T]]) -> T:
    """Run `work()`, but call it off as soon as the client hangs up (also while it waits in the queue)."""
    outcome: list[T] = []
    failure: Exception | None = None

    async def watch(scope: anyio.CancelScope) -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        scope.cancel()

    async with anyio.create_task_group() as group:
        group.start_soon(watch, group.cancel_scope)
        try:
            outcome.append(await work())
        except Exception as exc:  # re-raised as itself below, not wrapped in a task group's ExceptionGroup
            failure = exc
        group.cancel_scope.cancel()
    if failure is not None:
        raise failure
    if not outcome:
        raise ClientGone
    return outcome[0]


class TurnStream(StreamingResponse):
    """An SSE response that calls its turn off when it ends for any reason, a vanished client included."""

    def __init__(self, content: AsyncIterator[str], turn: Turn):
        super().__init__(content, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self.turn = turn

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.turn.cancel()


def sse(payload: ChatCompletionChunk | dict) -> str:
    data = payload.model_dump_json() if isinstance(payload, ChatCompletionChunk) else json.dumps(payload)
    return f"data: {data}\n\n"


async def chunks(model: str, view: GateView, events: AsyncIterator, include_usage: bool,
                 count: Callable[[int], None]) -> AsyncIterator[str]:
    """The turn as OpenAI chunks: role + gate first, then deltas, then finish (+ usage), then [DONE]."""
    head = ChatCompletionChunk(model=model, choices=[ChunkChoice(delta=DeltaMessage(role="assistant", content=""))],
                               gate=GateInfo.of(view))
    same = {"id": head.id, "created": head.created, "model": model}
    yield sse(head)
    try:
        async for event in events:
            if isinstance(event, Delta):
                field = "reasoning_content" if event.channel == "reasoning" else "content"
                yield sse(ChatCompletionChunk(**same, choices=[ChunkChoice(delta=DeltaMessage(**{field: event.text}))]))
            elif isinstance(event, TurnResult):
                yield sse(ChatCompletionChunk(**same, gate=GateInfo.of(view, event), choices=[
                    ChunkChoice(delta=DeltaMessage(), finish_reason=finish_reason(event))]))
                if include_usage:
                    yield sse(ChatCompletionChunk(**same, choices=[], usage=Usage.of(event)))
    except Exception as exc:  # headers are sent: report in-band, as OpenAI-compatible servers do
        if isinstance(exc, TurnError):
            failure = errors.from_turn(exc)
        else:
            log.exception("stream failed")
            failure = APIError(500, f"generation failed: {type(exc).__name__}", kind="server_error")
        count(failure.status)
        yield sse(failure.body())
    yield "data: [DONE]\n\n"


def key_matches(given: bytes, key: str) -> bool:
    """Constant-time comparison of bytes, so a non-ASCII key works (str comparison refuses non-ASCII)."""
    return hmac.compare_digest(given, key.encode("utf-8"))


def require_key(settings: Settings) -> Callable[..., Awaitable[None]]:
    """A dependency enforcing `Authorization: Bearer <api_key>` when a key is configured."""
    async def check(request: Request) -> None:
        key = settings.server.api_key
        if key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        # Header values arrive decoded as latin-1, so this gives back the bytes sent (UTF-8 for a non-ASCII key).
        if scheme.lower() != "bearer" or not key_matches(token.strip().encode("latin-1"), key):
            raise APIError(401, "Missing or incorrect API key: send 'Authorization: Bearer <key>'.",
                           code="invalid_api_key")
    return check


ERRORS = {400: "invalid request", 401: "missing or wrong API key (when the server has one)",
          404: "unknown model", 413: "body larger than server.max_body_bytes",
          415: "body not sent as application/json"}


def readable(router: FastAPI | APIRouter, path: str, endpoint: Callable, **kwargs) -> None:
    """A GET route that also answers HEAD (HEAD stays out of the OpenAPI document, as frameworks usually do)."""
    router.add_api_route(path, endpoint, methods=["GET"], **kwargs)
    router.add_api_route(path, endpoint, methods=["HEAD"], include_in_schema=False, **kwargs)


def documented(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI entries for these error statuses, all in OpenAI's error shape."""
    return {status: {"model": ErrorBody, "description": ERRORS[status]} for status in statuses}


def create_app(settings: Settings, gate: Gate) -> FastAPI:
    """The API around one ready Gate: /v1/chat/completions, /v1/models, /health (+ the UI at /ui if enabled)."""
    served = settings.server.model_name or settings.model.id
    started = int(time.time())
    runner = TurnRunner(gate)
    app = FastAPI(title="knowledge-gate", summary="OpenAI-compatible chat with a knowledge gate")
    app.state.runner = runner
    errors.install(app, runner.stats.count)
    app.add_middleware(BodyLimit, limit=settings.server.max_body_bytes)
    openapi.install(app, settings)
    if settings.server.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.server.cors_origins,
                           allow_methods=["GET", "HEAD", "POST"], allow_headers=["*"])
    api = APIRouter(prefix="/v1", dependencies=[Depends(require_key(settings))])

    def check_model(name: str) -> None:
        if name != served:
            raise APIError(404, f"The model '{name}' does not exist; this server serves '{served}'.",
                           param="model", code="model_not_found")

    async def health() -> Health:
        return Health(model=served, **asdict(runner.stats))

    async def models() -> ModelList:
        return ModelList(data=[ModelCard(id=served, created=started)])

    async def model(model_id: str) -> ModelCard:
        check_model(model_id)
        return ModelCard(id=served, created=started)

    readable(app, "/health", health)
    readable(api, "/models", models, responses=documented(401))
    readable(api, "/models/{model_id}", model, responses=documented(401, 404))

    @api.post("/chat/completions", response_model=None, dependencies=[Depends(require_json)], responses={
        200: {"model": ChatCompletion, "description": "the reply; with `stream: true`, server-sent events"},
        **documented(400, 401, 404, 413, 415)})
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response | ChatCompletion:
        check_model(body.model)
        check_budget(body, settings.server.max_tokens_limit)
        turn: Turn | None = None

        async def begin() -> Turn:
            nonlocal turn
            turn = await runner.start(body.turns(), body.overrides())
            return turn

        async def whole() -> TurnResult:
            return await (await begin()).result()

        async def opened() -> tuple[AsyncIterator, GateView]:
            events = (await begin()).events()
            return events, await anext(events)

        handed_off = False  # a stream's turn belongs to its response from then on
        try:
            if not body.stream:
                return ChatCompletion.of(served, await unless_gone(request, whole))
            events, view = await unless_gone(request, opened)  # errors before the first token are plain HTTP errors
            handed_off = True
            return TurnStream(chunks(served, view, events, body.include_usage, runner.stats.count), turn)
        except ClientGone:
            return Response(status_code=499)
        finally:
            if turn is not None and not handed_off:
                turn.cancel()

    app.include_router(api)
    if settings.server.ui:
        mount_ui(app, settings, gate)
    return app


def mount_ui(app: FastAPI, settings: Settings, gate: Gate) -> None:
    """Mount the Gradio view at /ui; with an API key set, its login password is that key."""
    import gradio as gr

    from gate.adapters.ui import build_ui
    key = settings.server.api_key
    auth = (lambda _user, password: key_matches(password.encode("utf-8"), key)) if key else None
    gr.mount_gradio_app(app, build_ui(settings, gate), path="/ui", auth=auth,
                        auth_message="Password: the server's API key." if key else None)


@contextmanager
def serving_in_thread(app: FastAPI, host: str = "127.0.0.1", timeout_s: float = 30) -> Iterator[str]:
    """Serve `app` from a background thread on a free port (tests, benchmarks); yields the base URL."""
    import uvicorn
    with socket.socket() as sock:
        sock.bind((host, 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True, name="gate-server")
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=timeout_s)


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Load the model and sidecar once, then serve until interrupted (what `gate serve` runs)."""
    import uvicorn

    from gate.pipeline import Gate
    gate = Gate(settings)
    app = create_app(settings, gate)
    opened = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[object]:
        """Close the engine at shutdown: uvicorn then re-raises SIGTERM, which ends the process at once, so a
        `finally` after uvicorn.run never runs and vLLM's engine processes would be left running."""
        async with opened(app) as state:
            yield state
        await anyio.to_thread.run_sync(gate.engine.close)

    app.router.lifespan_context = lifespan
    try:
        uvicorn.run(app, host=host or settings.server.host, port=port or settings.server.port)
    finally:
        gate.engine.close()  # also when the server never started (closing twice is a no-op)

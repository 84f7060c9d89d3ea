"""What a request may be before any work is done for it: its size, its content type, its token budget.

One engine serves everyone, so a client must not hold it (or the event loop) with a huge body or a
request for thousands of tokens: both are refused up front, with a clear error (413 / 400), not clamped.
"""
from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gate.adapters.errors import APIError
from gate.adapters.request import ChatCompletionRequest


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than this server accepts ({limit} bytes, "
                              "server.max_body_bytes).")


class BodyLimit:
    """413 for a body above `limit` bytes, raised from the app's first read when Content-Length says so, else as
    soon as the bytes received pass it, so an oversized body is never read in full nor parsed.

    Raised inside `receive`, it reaches the app's own HTTPException handler, which answers in OpenAI's shape.
    """

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        received = int(declared) if declared.isdigit() else 0

        async def counted() -> Message:
            nonlocal received
            if received > self.limit:
                raise BodyTooLarge(self.limit)
            message = await receive()
            if message["type"] == "http.request":
                received += 0 if declared.isdigit() else len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, counted, send)


async def require_json(request: Request) -> None:
    """The body must be sent as JSON (vLLM answers the same 415); said plainly, before the body is validated."""
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise APIError(415, f"The body must be a JSON object sent with 'Content-Type: application/json' "
                            f"(got {media or 'no Content-Type'}).", code="unsupported_media_type")


def check_budget(body: ChatCompletionRequest, limit: int) -> None:
    """A request may not ask for more than the server's token limit: a 400 naming the field, never a clamp
    (each field is checked, also the one `max_completion_tokens` overrides)."""
    for field in ("max_tokens", "max_completion_tokens"):
        asked = getattr(body, field)
        if asked is not None and asked > limit:
            raise APIError(400, f"{field}: {asked} is above this server's limit of {limit} tokens per request "
                                "(server.max_tokens_limit).", param=field, code="max_tokens_exceeded")

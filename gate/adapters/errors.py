"""OpenAI-style error bodies, `{"error": {message, type, param, code}}`, so OpenAI clients raise the right exception.

Every failure a request can cause ends here as a JSON response; the server keeps serving after each, on the
same connection: an exception that escapes the app is answered by `ErrorGuard`, never re-raised to the server
(uvicorn drops a keep-alive connection after an app error without saying so, and the client's next request on
it fails).
"""
from __future__ import annotations

import json
import logging
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gate.turns import PromptTooLong, TurnError

log = logging.getLogger(__name__)

_KINDS = {404: "not_found_error"}
_CODES = {413: "request_too_large", 405: "method_not_allowed"}


class ErrorResponse(JSONResponse):
    """JSON with non-ASCII escaped: a message that echoes a client's lone surrogate still encodes."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode()


class APIError(Exception):
    """An error to send as-is. `kind` is OpenAI's `type` (invalid_request_error, server_error, ...)."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code
        self.headers = dict(headers or {})
        if status == 401:
            self.headers.setdefault("WWW-Authenticate", "Bearer")

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return ErrorResponse(self.body(), status_code=self.status, headers=self.headers or None)


def param_path(loc: tuple) -> str | None:
    """pydantic's location as OpenAI writes a param: ('messages', 0, 'role') -> 'messages[0].role'.

    Names of union members that pydantic puts in a location ('list[TextPart]', 'function-after[...]') are
    not fields, and are left out.
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).isidentifier():
            out += f".{part}" if out else str(part)
    return out or None


def from_validation(exc: RequestValidationError) -> APIError:
    """The first problem in the body; a body that is not JSON gets OpenAI's own wording."""
    first = exc.errors()[0]
    if first["type"] == "json_invalid":
        return APIError(400, "We could not parse the JSON body of your request: "
                             f"{first.get('ctx', {}).get('error', 'invalid JSON')}", code="invalid_json")
    loc = tuple(first["loc"][1:]) if first["loc"][:1] == ("body",) else tuple(first["loc"])
    param = param_path(loc)
    if param is None:  # the body as a whole: absent, or not an object
        return APIError(400, "The request body must be a JSON object with at least 'model' and 'messages' "
                             f"({first['msg']}).", code=first["type"])
    return APIError(400, f"{param}: {first['msg']}", param=param, code=first["type"])


def from_turn(exc: TurnError) -> APIError:
    """An error the Gate raised for this request (bad override, prompt too long for the context window)."""
    code = exc.code or ("context_length_exceeded" if isinstance(exc, PromptTooLong) else "invalid_value")
    param = "messages" if isinstance(exc, PromptTooLong) and exc.param is None else exc.param
    if param in ("mode", "bands"):
        param = f"gate.{param}"
    return APIError(400, str(exc), param=param, code=code)


def from_http(exc: HTTPException) -> APIError:
    """Starlette's own errors (404 route, 405 method with its `Allow` header, 413 body) in OpenAI shape."""
    return APIError(exc.status_code, str(exc.detail), kind=_KINDS.get(exc.status_code, "invalid_request_error"),
                    code=_CODES.get(exc.status_code), headers=exc.headers)


class ErrorGuard:
    """Outermost middleware: answers an escaped exception with a JSON 500 instead of re-raising it, and reports
    each response's status (`count`) so /health can tell client errors from server errors."""

    def __init__(self, app: ASGIApp, count: Callable[[int], None]):
        self.app, self.count = app, count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: int | None = None

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            if status is not None:  # the response has begun: only ending the connection can tell the client
                raise
            log.exception("unhandled error serving %s", scope.get("path"))
            await APIError(500, f"internal error: {type(exc).__name__}", kind="server_error").response()(
                scope, receive, watched)
        finally:
            if status is not None:
                self.count(status)


def install(app: FastAPI, count: Callable[[int], None]) -> None:
    """Route every exception through the OpenAI error shape; `count` hears every response status."""

    @app.exception_handler(APIError)
    async def _api(_: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return from_validation(exc).response()

    @app.exception_handler(TurnError)
    async def _turn(_: Request, exc: TurnError) -> JSONResponse:
        return from_turn(exc).response()

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return from_http(exc).response()

    app.add_middleware(ErrorGuard, count=count)

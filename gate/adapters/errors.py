"""OpenAI-style error bodies, `{"error": {message, type, param, code}}`, so OpenAI clients raise the right exception.

Every failure a request can cause ends here as a JSON response; the server keeps serving after each.
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from gate.turns import PromptTooLong, TurnError

log = logging.getLogger(__name__)


class APIError(Exception):
    """An error to send as-is. `kind` is OpenAI's `type` (invalid_request_error, server_error, ...)."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def param_path(loc: tuple) -> str | None:
    """pydantic's location as OpenAI writes a param: ('messages', 0, 'role') -> 'messages[0].role'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


def from_validation(exc: RequestValidationError) -> APIError:
    """The first problem in the body; a body that is not JSON gets OpenAI's own wording."""
    first = exc.errors()[0]
    if first["type"] == "json_invalid":
        return APIError(400, "We could not parse the JSON body of your request: "
                             f"{first.get('ctx', {}).get('error', 'invalid JSON')}", code="invalid_json")
    loc = tuple(first["loc"][1:]) if first["loc"][:1] == ("body",) else tuple(first["loc"])
    param = param_path(loc)
    return APIError(400, f"{param}: {first['msg']}" if param else first["msg"], param=param, code=first["type"])


def from_turn(exc: TurnError) -> APIError:
    """An error the Gate raised for this request (bad override, prompt too long for the context window)."""
    code = exc.code or ("context_length_exceeded" if isinstance(exc, PromptTooLong) else "invalid_value")
    param = "messages" if isinstance(exc, PromptTooLong) and exc.param is None else exc.param
    if param in ("mode", "bands"):
        param = f"gate.{param}"
    return APIError(400, str(exc), param=param, code=code)


def install(app: FastAPI) -> None:
    """Route every exception through the OpenAI error shape."""

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
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return APIError(exc.status_code, str(exc.detail), kind=kind).response()

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error serving %s", request.url.path)
        return APIError(500, f"internal error: {type(exc).__name__}", kind="server_error").response()

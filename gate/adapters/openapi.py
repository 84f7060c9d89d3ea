"""The OpenAPI document as this server really answers, so generated clients and API fuzzers can trust it.

FastAPI's own document declares 422 with its validation schema; this server answers 400 in OpenAI's error
shape (declared per route). A streamed reply is declared as server-sent events, each event's `data` a
chunk (or an in-band error) as JSON, or the final `[DONE]` (OpenAPI 3.1: the media type's schema describes
one event). The server's token limit comes from the settings, and the Bearer scheme is declared only when
an API key is set (without one, no request needs it).
"""
from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from gate.adapters.types import ChatCompletionChunk, ErrorBody
from gate.config import Settings

_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens")
_REF = "#/components/schemas/{model}"
SSE_EVENT = {
    "type": "object", "required": ["data"],
    "properties": {"data": {"anyOf": [
        {"const": "[DONE]"},
        {"type": "string", "contentMediaType": "application/json", "contentSchema": {"anyOf": [
            {"$ref": _REF.format(model="ChatCompletionChunk")}, {"$ref": _REF.format(model="ErrorBody")}]}},
    ]}},
}


def _add_schema(schemas: dict[str, Any], model: type[BaseModel]) -> None:
    """A model no route returns directly (the stream's chunks), with the models it uses, into the components."""
    schema = model.model_json_schema(ref_template=_REF, mode="serialization")
    for name, sub in schema.pop("$defs", {}).items():
        schemas.setdefault(name, sub)
    schemas[model.__name__] = schema


def document(app: FastAPI, settings: Settings) -> dict[str, Any]:
    doc = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
    for operations in doc["paths"].values():
        for operation in operations.values():
            operation["responses"].pop("422", None)
    schemas = doc["components"]["schemas"]
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    for model in (ChatCompletionChunk, ErrorBody):
        _add_schema(schemas, model)
    doc["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]["text/event-stream"] = {
        "schema": SSE_EVENT}
    fields = schemas["ChatCompletionRequest"]["properties"]
    for name in _TOKEN_FIELDS:
        integer = next(option for option in fields[name]["anyOf"] if option.get("type") == "integer")
        integer["maximum"] = settings.server.max_tokens_limit
    if settings.server.api_key:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        for path, operations in doc["paths"].items():
            if path.startswith("/v1/"):
                for operation in operations.values():
                    operation["security"] = [{"bearer": []}]
    return doc


def install(app: FastAPI, settings: Settings) -> None:
    """Serve `document` at /openapi.json (built once, on first request)."""
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app, settings)
        return app.openapi_schema
    app.openapi = openapi

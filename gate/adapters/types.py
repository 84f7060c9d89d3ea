"""OpenAI chat-completions wire format of the replies, as pydantic models (the request is in `request.py`).

They also make the OpenAPI document: what the server sends is what it declares.
"""
from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field, model_serializer

from gate.config import FACTUAL_THRESHOLD
from gate.turns import Decision, GateView, Mode, TurnResult


class GateInfo(BaseModel):
    """The gate's view of this turn; timings that are not known yet (first stream chunk) are null."""
    p_knows: float | None
    p_factual: float | None = None
    decision: Decision | None
    mode: Mode
    bands: tuple[float, float]
    factual_threshold: float = FACTUAL_THRESHOLD
    seed: str | None
    opening: str = ""
    abstained: bool = False
    probe_ms: float
    first_token_ms: float | None = None
    total_ms: float | None = None
    note: str | None = None

    @classmethod
    def of(cls, view: GateView, result: TurnResult | None = None) -> "GateInfo":
        info = cls(p_knows=view.p_knows, p_factual=view.p_factual, decision=view.decision, mode=view.mode,
                   bands=view.bands, factual_threshold=view.factual_threshold, seed=view.seed_text,
                   opening=view.opening, probe_ms=view.probe_ms, note=view.note)
        if result is not None:
            info.abstained = result.finish_reason == "abstain"
            info.first_token_ms, info.total_ms = result.first_token_ms, result.total_ms
        return info


FinishReason = Literal["stop", "length"]


def finish_reason(result: TurnResult) -> FinishReason:
    """OpenAI clients know `stop` and `length`; an abstention is a normal stop, flagged in `gate.abstained`."""
    return "length" if result.finish_reason == "length" else "stop"


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, result: TurnResult) -> "Usage":
        return cls(prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
                   total_tokens=result.prompt_tokens + result.completion_tokens)


class _Completion(BaseModel):
    id: str = Field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    reasoning_content: str | None = None


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason


class ChatCompletion(_Completion):
    object: Literal["chat.completion"] = "chat.completion"
    choices: list[Choice]
    usage: Usage
    gate: GateInfo

    @classmethod
    def of(cls, model: str, result: TurnResult) -> "ChatCompletion":
        message = AssistantMessage(content=result.content, reasoning_content=result.reasoning or None)
        return cls(model=model, choices=[Choice(message=message, finish_reason=finish_reason(result))],
                   usage=Usage.of(result), gate=GateInfo.of(result.gate, result))


class DeltaMessage(BaseModel):
    """A delta carries only what it adds, as OpenAI's do: null fields are dropped on the wire."""
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None

    @model_serializer(mode="wrap")
    def _drop_nulls(self, handler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class ChunkChoice(BaseModel):
    index: int = 0
    delta: DeltaMessage
    finish_reason: FinishReason | None = None


class ChatCompletionChunk(_Completion):
    """One SSE event; `gate` rides on the first and the last, `usage` on its own final chunk."""
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[ChunkChoice]
    usage: Usage | None = None
    gate: GateInfo | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "knowledge-gate"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    """/health: the queue and how requests ended (4xx: the client's fault; 5xx: the server's)."""
    status: Literal["ok"] = "ok"
    model: str
    running: bool
    waiting: int
    served: int
    cancelled: int
    client_errors: int
    server_errors: int


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(BaseModel):
    """Every error, as OpenAI sends it (the openai client raises BadRequestError, NotFoundError, ... from it)."""
    error: ErrorDetail

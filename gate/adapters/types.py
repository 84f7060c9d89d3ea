"""OpenAI chat-completions wire format, as pydantic models: requests are validated here, before a turn is queued.

Limits on generation parameters are read from `GenerationSettings` so the API and the config never disagree.
"""
from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_serializer
from pydantic_core import PydanticCustomError

from gate.config import Bands, GenerationSettings
from gate.turns import Decision, GateView, Mode, TurnOverrides, TurnResult


def _limits_of(name: str) -> Any:
    """The type of a `GenerationSettings` field with its bounds, for reuse in the request."""
    info = GenerationSettings.model_fields[name]
    return Annotated[(info.annotation, *info.metadata)]


Role = Literal["system", "developer", "user", "assistant"]


class _Lenient(BaseModel):
    """Unknown fields are ignored, as OpenAI-compatible servers do (clients send fields we don't use)."""
    model_config = ConfigDict(extra="ignore")


class TextPart(_Lenient):
    type: Literal["text"]
    text: str


class ChatMessage(_Lenient):
    role: Role
    content: str | list[TextPart] | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _text_only(cls, content: Any) -> Any:
        """Name the offending part plainly, instead of pydantic's error per union member."""
        for i, part in enumerate(content if isinstance(content, list) else []):
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            if kind != "text":
                raise PydanticCustomError("unsupported_content",
                                          "content part {i} has type '{kind}'; only text parts are supported",
                                          {"i": i, "kind": kind})
        return content

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(part.text or "" for part in self.content)
        return self.content or ""

    def as_turn(self) -> dict[str, str]:
        """The message as the chat template takes it; `developer` is OpenAI's newer name for `system`."""
        return {"role": "system" if self.role == "developer" else self.role, "content": self.text()}


class GateOptions(BaseModel):
    """The request's extra `gate` field (`extra_body={"gate": {...}}` in the openai client)."""
    model_config = ConfigDict(extra="forbid")
    mode: Mode | None = None
    bands: tuple[float, float] | None = None
    factual_threshold: float | None = Field(None, ge=0.0, le=1.0, description="P(factual) below this passes")

    @field_validator("bands")
    @classmethod
    def _valid_bands(cls, bands: tuple[float, float] | None) -> tuple[float, float] | None:
        if bands is not None:
            try:
                Bands(low=bands[0], high=bands[1])
            except ValidationError as exc:
                msg = exc.errors()[0]["msg"].removeprefix("Value error, ")
                raise PydanticCustomError("invalid_bands", "{msg}", {"msg": msg}) from None
        return bands


class StreamOptions(_Lenient):
    include_usage: bool = False


class ChatCompletionRequest(_Lenient):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: _limits_of("max_tokens") | None = None
    max_completion_tokens: _limits_of("max_tokens") | None = None
    temperature: _limits_of("temperature") | None = None
    top_p: _limits_of("top_p") | None = None
    stop: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list, max_length=4,
                                                            description="a string or up to 4 strings")
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1)
    gate: GateOptions = GateOptions()

    @field_validator("n")
    @classmethod
    def _one_choice(cls, n: int) -> int:
        if n != 1:
            raise PydanticCustomError("n_not_supported", "only n=1 is supported: one model instance, one turn at a time")
        return n

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, stop: Any) -> Any:
        """OpenAI takes one stop string, a list, or null."""
        return [stop] if isinstance(stop, str) else stop or []

    def overrides(self) -> TurnOverrides:
        return TurnOverrides(mode=self.gate.mode, bands=self.gate.bands, factual_threshold=self.gate.factual_threshold,
                             max_tokens=self.max_completion_tokens or self.max_tokens,
                             temperature=self.temperature, top_p=self.top_p, seed=self.seed, stop=self.stop)

    def turns(self) -> list[dict[str, str]]:
        return [m.as_turn() for m in self.messages]

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


# --- responses ---------------------------------------------------------------------------------------------

class GateInfo(BaseModel):
    """The gate's view of this turn; timings that are not known yet (first stream chunk) are null."""
    p_knows: float | None
    p_factual: float | None = None
    decision: Decision | None
    mode: Mode
    bands: tuple[float, float]
    factual_threshold: float = 0.5
    seed: str | None
    abstained: bool = False
    probe_ms: float
    first_token_ms: float | None = None
    total_ms: float | None = None
    note: str | None = None

    @classmethod
    def of(cls, view: GateView, result: TurnResult | None = None) -> "GateInfo":
        info = cls(p_knows=view.p_knows, p_factual=view.p_factual, decision=view.decision, mode=view.mode,
                   bands=view.bands, factual_threshold=view.factual_threshold, seed=view.seed_text,
                   probe_ms=view.probe_ms, note=view.note)
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

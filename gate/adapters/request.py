"""The chat-completions request, as pydantic models: every field is checked here, before a turn is prepared.

Field by field this follows OpenAI's API: what the gate serves is validated strictly (a number is a JSON
number, never a string or a boolean); what it cannot serve (log probabilities, JSON mode, tool *calls*,
penalties) is refused with a 400 naming the field, unless the value asks for nothing (false, 0, null, "none");
optional fields take null as "unset". Unknown fields are ignored, as OpenAI-compatible servers do.
Limits on generation parameters are read from `GenerationSettings` so the API and the config never disagree.
SERVER.md has the table of every field.
"""
from __future__ import annotations

import json
from typing import Annotated, Any, Callable, Literal

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictFloat,
                      StrictInt, ValidationError, ValidationInfo, WithJsonSchema, field_validator)
from pydantic_core import PydanticCustomError

from gate.config import Bands, GenerationSettings
from gate.turns import Mode, TurnOverrides

INT64 = 2 ** 63  # seeds are 64-bit, as in vLLM: [-2**63, 2**63 - 1]


def _unicode(text: Any) -> Any:
    """JSON can carry a lone surrogate ("\\ud800"); no tokenizer can encode one, so it is refused here."""
    try:
        if isinstance(text, str):
            text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PydanticCustomError("invalid_unicode", "contains a lone surrogate at character {at}: not valid "
                                  "Unicode text", {"at": exc.start}) from None
    return text


Text = Annotated[str, BeforeValidator(_unicode)]


def _limits_of(name: str) -> Any:
    """A `GenerationSettings` field's type with its bounds, strict (JSON numbers only), for reuse in the request."""
    info = GenerationSettings.model_fields[name]
    strict = {int: StrictInt, float: StrictFloat}[info.annotation]
    return Annotated[(strict, *info.metadata)]


class _Lenient(BaseModel):
    """Unknown fields are ignored, as OpenAI-compatible servers do (clients send fields we don't use)."""
    model_config = ConfigDict(extra="ignore")


class TextPart(_Lenient):
    type: Literal["text"]
    text: Text


class FunctionCall(_Lenient):
    """A call the assistant made: OpenAI sends `arguments` as a JSON string; an object is taken too."""
    name: Text
    arguments: str | dict[str, Any] = "{}"

    @field_validator("arguments", mode="before")
    @classmethod
    def _as_json_text(cls, arguments: Any) -> str:
        if isinstance(arguments, dict):
            arguments = json.dumps(arguments, ensure_ascii=False)
        if not isinstance(arguments, str):
            raise PydanticCustomError("string_type", "must be a JSON string (or an object)")
        return _unicode(arguments)


class ToolCall(_Lenient):
    id: Text | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Lenient):
    """One message; `tool` (and legacy `function`) results and assistant `tool_calls` are tool-calling history."""
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None
    name: Text | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: Text | None = None
    function_call: FunctionCall | None = Field(None, description="legacy form of one assistant tool call")

    @field_validator("content", mode="before")
    @classmethod
    def _text_only(cls, content: Any) -> Any:
        """Check the content whole, so an error names the problem plainly (not pydantic's per union member)."""
        if content is None:
            return content
        if isinstance(content, str):
            return _unicode(content)
        if not isinstance(content, list):
            raise PydanticCustomError("content_type", "must be a string, a list of text parts, or null")
        for i, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            if kind != "text":
                raise PydanticCustomError("unsupported_content",
                                          "content part {i} has type '{kind}'; only text parts are supported",
                                          {"i": i, "kind": kind})
            if not isinstance(part.get("text"), str):
                raise PydanticCustomError("content_type", "content part {i} needs a string 'text'", {"i": i})
            _unicode(part["text"])
        return content

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(part.text for part in self.content)
        return self.content or ""

    def as_turn(self) -> dict[str, Any]:
        """The message as the Gate takes it: OpenAI's shape with text content; `developer` is the newer `system`."""
        turn = {"role": "system" if self.role == "developer" else self.role, "content": self.text()}
        return turn | self.model_dump(include={"name", "tool_calls", "tool_call_id", "function_call"},
                                      exclude_none=True)


class GateOptions(BaseModel):
    """The request's extra `gate` field (`extra_body={"gate": {...}}` in the openai client)."""
    model_config = ConfigDict(extra="forbid")
    mode: Mode | None = None
    bands: tuple[StrictFloat, StrictFloat] | None = None
    factual_threshold: StrictFloat | None = Field(None, ge=0.0, le=1.0,
                                                  description="P(factual) below this passes the gate")

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
    include_usage: StrictBool | None = None


class FunctionDefinition(_Lenient):
    name: Text
    description: Text | None = None
    parameters: dict[str, Any] | None = None


class Tool(_Lenient):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class ResponseFormat(_Lenient):
    type: Literal["text", "json_object", "json_schema"]


NO_CALLS = "this server never calls tools: its replies are text"
# Fields the gate cannot serve: accepted only with a value that asks for nothing (the check, and why not).
REFUSED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "logprobs": (lambda v: not v, "log probabilities are not returned by this server"),
    "top_logprobs": (lambda v: not v, "log probabilities are not returned by this server"),
    "response_format": (lambda v: v is None or (isinstance(v, dict) and v.get("type") == "text"),
                        "only {'type': 'text'}: this server does not constrain decoding to JSON"),
    "frequency_penalty": (lambda v: not v, "this server's decoder applies no penalties; send 0 or leave it out"),
    "presence_penalty": (lambda v: not v, "this server's decoder applies no penalties; send 0 or leave it out"),
    "logit_bias": (lambda v: not v, "this server's decoder applies no logit bias"),
    "audio": (lambda v: v is None, "audio output is not supported"),
    "modalities": (lambda v: not v or (isinstance(v, list) and all(m == "text" for m in v)), "only ['text'] output"),
    "web_search_options": (lambda v: v is None, "web search is not available"),
    "n": (lambda v: v in (None, 1), "only n=1: one model instance, one reply per turn"),
    "tool_choice": (lambda v: v in (None, "none", "auto"), f"{NO_CALLS}; 'required' or a named tool "
                    "cannot be honoured"),
    "function_call": (lambda v: v in (None, "none", "auto"), f"{NO_CALLS}; a named function cannot be honoured"),
}


def _as_stop_list(stop: Any) -> Any:
    """OpenAI takes one stop string, a list, or null."""
    return [stop] if isinstance(stop, str) else [] if stop is None else stop


StopText = Annotated[str, Field(min_length=1), BeforeValidator(_unicode)]
Stop = Annotated[list[StopText], BeforeValidator(_as_stop_list), WithJsonSchema({
    "anyOf": [{"type": "string", "minLength": 1}, {"type": "array", "items": {"type": "string", "minLength": 1}},
              {"type": "null"}],
    "description": "a string, or any number of strings, that end the answer (not included in it)"})]


class ChatCompletionRequest(_Lenient):
    model: Text
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: _limits_of("max_tokens") | None = None
    max_completion_tokens: _limits_of("max_tokens") | None = None
    temperature: _limits_of("temperature") | None = None
    top_p: _limits_of("top_p") | None = Field(None, description="in (0, 1], as vLLM: 0 is refused; a tiny value "
                                                                  "keeps only the most likely token")
    stop: Stop = Field(default_factory=list)
    seed: Annotated[StrictInt, Field(ge=-INT64, lt=INT64)] | None = None
    stream: StrictBool | None = None
    stream_options: StreamOptions | None = None
    gate: GateOptions | None = None
    # refused unless they ask for nothing (see REFUSED); tool_choice is checked before tools, which need it
    n: Annotated[StrictInt, Field(ge=1, le=1)] | None = Field(None, description="only 1")
    logprobs: StrictBool | None = Field(None, description="only false")
    top_logprobs: StrictInt | None = Field(None, description="only 0")
    response_format: ResponseFormat | None = Field(None, description="only {'type': 'text'}")
    frequency_penalty: StrictFloat | None = Field(None, description="only 0")
    presence_penalty: StrictFloat | None = Field(None, description="only 0")
    logit_bias: dict[str, StrictFloat] | None = Field(None, description="only empty")
    audio: dict[str, Any] | None = Field(None, description="only null")
    modalities: list[Literal["text", "audio"]] | None = Field(None, description="only ['text']")
    web_search_options: dict[str, Any] | None = Field(None, description="only null")
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = Field(
        None, description="'none' or 'auto': this server never calls tools")
    function_call: Literal["none", "auto"] | dict[str, Any] | None = Field(None, description="legacy tool_choice")
    tools: list[Tool] | None = Field(None, description="only with tool_choice 'none' (or empty)",
                                     validate_default=True)
    functions: list[FunctionDefinition] | None = Field(None, description="legacy tools; only with function_call "
                                                                         "'none' (or empty)", validate_default=True)

    @field_validator(*REFUSED, mode="before")
    @classmethod
    def _refused(cls, value: Any, info: ValidationInfo) -> Any:
        allowed, why = REFUSED[info.field_name]
        if not allowed(value):
            raise PydanticCustomError("unsupported_parameter", "not supported: {why}", {"why": why})
        return value

    @field_validator("tools", "functions")
    @classmethod
    def _no_calls_asked(cls, listed: list | None, info: ValidationInfo) -> list | None:
        """Tools may be listed only when the request says not to call them: nothing would ever call them."""
        choice = info.data.get("tool_choice" if info.field_name == "tools" else "function_call")
        if listed and choice != "none":
            chooser = "tool_choice" if info.field_name == "tools" else "function_call"
            raise PydanticCustomError("unsupported_parameter", "not supported: {why}; send {chooser}: 'none' to "
                                      "get a text reply with this list ignored",
                                      {"why": NO_CALLS, "chooser": chooser})
        return listed

    @property
    def requested_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def overrides(self) -> TurnOverrides:
        gate = self.gate or GateOptions()
        return TurnOverrides(mode=gate.mode, bands=gate.bands, factual_threshold=gate.factual_threshold,
                             max_tokens=self.requested_tokens,
                             temperature=self.temperature, top_p=self.top_p, seed=self.seed, stop=self.stop)

    def turns(self) -> list[dict[str, Any]]:
        return [m.as_turn() for m in self.messages]

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

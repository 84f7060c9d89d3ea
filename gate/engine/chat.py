"""Chat formats: OpenAI-style messages to the exact prompt text the model is served, and where it thinks.

Three ways to open a thought, detected from the tokenizer (overridable by config `model.thinking`):
Gemma 4 `<|channel>thought\\n … <channel|>` (thinking enabled in the template), Qwen3/R1 `<think>\\n … </think>`,
and, for models without a thinking channel, a hidden prefill of the assistant turn.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from jinja2 import TemplateError
from transformers import PreTrainedTokenizerBase

from gate.engine.tool_history import for_template, tool_calls
from gate.turns import TurnError

FormatName = Literal["gemma4", "think", "prefill"]
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool",
          "function": "tool"}


@dataclass(frozen=True)
class ThinkingFormat:
    name: FormatName
    open: str = ""       # the special token that opens a thought ("" for a hidden prefill)
    close: str = ""      # the special token that closes it
    label: str = ""      # text right after `open` that names the channel, not part of the thought
    template_kwargs: dict = field(default_factory=dict)

    @property
    def has_channel(self) -> bool:
        return bool(self.open)


FORMATS: dict[str, ThinkingFormat] = {
    "gemma4": ThinkingFormat("gemma4", "<|channel>", "<channel|>", "thought\n", {"enable_thinking": True}),
    "think": ThinkingFormat("think", "<think>", "</think>", "\n", {"enable_thinking": True}),
    "prefill": ThinkingFormat("prefill"),
}


def thinking_format(tokenizer: PreTrainedTokenizerBase, choice: str = "auto") -> ThinkingFormat:
    """The format named by config, or the first whose markers are single tokens of this tokenizer."""
    vocab = tokenizer.get_vocab()
    if choice != "auto":
        fmt = FORMATS[choice]
        missing = [t for t in (fmt.open, fmt.close) if t and t not in vocab]
        if missing:
            raise ValueError(f"model.thinking: {choice!r} needs the tokens {missing} in the model's tokenizer")
        return fmt
    for fmt in FORMATS.values():
        if fmt.has_channel and fmt.open in vocab and fmt.close in vocab:
            return fmt
    return FORMATS["prefill"]


def opens_thought(prompt: str, fmt: ThinkingFormat) -> bool:
    """Whether the template itself already opened the thought (e.g. R1 templates end with `<think>\\n`)."""
    return fmt.has_channel and prompt.rstrip().endswith((fmt.open + fmt.label).rstrip())


def seed_opening(prompt: str, fmt: ThinkingFormat, seed: str) -> str:
    """Text appended after the prompt so the seed sits where the model thinks.

    In a channel the model continues the thought; as a hidden prefill the reply starts on the next line.
    """
    if not fmt.has_channel:
        return seed + "\n"
    return seed if opens_thought(prompt, fmt) else fmt.open + fmt.label + seed


def message_span(prompt: str, messages: list[dict], offsets: list[tuple[int, int]]) -> tuple[int, int] | None:
    """Token indices [start, end) of the latest user message's text inside the templated `prompt`, from the
    prompt's token character `offsets`; None when there is no user message or the template rewrote it."""
    text = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "").strip()
    at = prompt.rfind(text) if text else -1
    if at < 0:
        return None
    inside = [i for i, (a, b) in enumerate(offsets) if a < at + len(text) and b > at]
    return (inside[0], inside[-1] + 1) if inside else None


def normalize_messages(messages: list[dict]) -> list[dict]:
    """OpenAI-style messages as {role, content: str} (+ tool history: an assistant's `tool_calls`, a tool
    result's `tool_call_id` / `name`); text content parts are joined, anything else refused."""
    if not isinstance(messages, list) or not messages:
        raise TurnError("messages must be a non-empty list", param="messages")
    out = []
    for i, m in enumerate(messages):
        role = _ROLES.get(m.get("role")) if isinstance(m, dict) else None
        if role is None:
            raise TurnError(f"messages[{i}].role must be one of {sorted(_ROLES)}", param="messages")
        content = m.get("content") or ""
        if isinstance(content, list):
            if any(not isinstance(p, dict) or p.get("type") != "text" for p in content):
                raise TurnError(f"messages[{i}].content: only text parts are supported", param="messages")
            content = "".join(p.get("text", "") for p in content)
        if not isinstance(content, str):
            raise TurnError(f"messages[{i}].content must be a string or a list of text parts", param="messages")
        turn = {"role": role, "content": content}
        if role == "assistant" and (calls := tool_calls(m, i)):
            turn["tool_calls"] = calls
        if role == "tool":
            turn |= {k: m[k] for k in ("tool_call_id", "name") if isinstance(m.get(k), str)}
        out.append(turn)
    return out


def with_system(messages: list[dict], system_prompt: str | None) -> list[dict]:
    """Pin the system prompt (when the conversation has none) so training and serving see the same text;
    None or "" pins nothing."""
    if not system_prompt or (messages and messages[0]["role"] == "system"):
        return list(messages)
    return [{"role": "system", "content": system_prompt}, *messages]


def render_prompt(tokenizer: PreTrainedTokenizerBase, messages: list[dict], system_prompt: str | None,
                  **template_kwargs) -> str:
    """The templated prompt text, ending where the assistant's reply begins.

    A conversation the template refuses (some templates raise on roles out of order) or text no tokenizer
    can encode (a lone surrogate) is the request's fault: TurnError, never a crash.
    """
    messages = with_system(messages, system_prompt)
    if not tokenizer.chat_template:  # a base model reads the messages' text as a plain prompt after its BOS token
        return (tokenizer.bos_token or "") + "\n\n".join(m["content"] for m in messages)
    turns = for_template(tokenizer, messages)
    try:
        prompt = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True, **template_kwargs)
        prompt.encode("utf-8")
    except TemplateError as exc:
        raise TurnError(f"the model's chat template refuses these messages: {exc}", param="messages",
                        code="invalid_messages") from None
    except UnicodeEncodeError as exc:
        raise TurnError(f"messages contain a lone surrogate ({exc.object[exc.start]!r}): not valid Unicode text",
                        param="messages", code="invalid_unicode") from None
    return prompt

"""Chat formats: OpenAI-style messages to the exact prompt text the model is served, and where it thinks.

Three ways to open a thought, detected from the tokenizer (overridable by config `model.thinking`):
Gemma 4 `<|channel>thought\\n … <channel|>` (thinking enabled in the template), Qwen3/R1 `<think>\\n … </think>`,
and, for models without a thinking channel, a hidden prefill of the assistant turn.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from transformers import PreTrainedTokenizerBase

from gate.turns import TurnError

FormatName = Literal["gemma4", "think", "prefill"]
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


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


def normalize_messages(messages: list[dict]) -> list[dict]:
    """OpenAI-style messages as {role, content: str}; text content parts are joined, anything else refused."""
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
        out.append({"role": role, "content": content})
    return out


def with_system(messages: list[dict], system_prompt: str | None) -> list[dict]:
    """Pin the system prompt (when the conversation has none) so training and serving see the same text;
    None or "" pins nothing."""
    if not system_prompt or (messages and messages[0]["role"] == "system"):
        return list(messages)
    return [{"role": "system", "content": system_prompt}, *messages]


def render_prompt(tokenizer: PreTrainedTokenizerBase, messages: list[dict], system_prompt: str | None,
                  **template_kwargs) -> str:
    """The templated prompt text, ending where the assistant's reply begins. A base model without a chat
    template reads the messages' text as a plain prompt after its BOS token."""
    messages = with_system(messages, system_prompt)
    if not tokenizer.chat_template:
        return (tokenizer.bos_token or "") + "\n\n".join(m["content"] for m in messages)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **template_kwargs)

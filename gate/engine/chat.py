"""Chat formats: OpenAI-style messages to the exact prompt text the model is served."""
from __future__ import annotations

from transformers import PreTrainedTokenizerBase


def with_system(messages: list[dict], system_prompt: str | None) -> list[dict]:
    """Pin the system prompt (when the conversation has none) so training and serving see the same text."""
    if system_prompt is None or (messages and messages[0]["role"] == "system"):
        return list(messages)
    return [{"role": "system", "content": system_prompt}, *messages]


def render_prompt(tokenizer: PreTrainedTokenizerBase, messages: list[dict], system_prompt: str | None,
                  **template_kwargs) -> str:
    """The templated prompt text, ending where the assistant's reply begins."""
    return tokenizer.apply_chat_template(with_system(messages, system_prompt), tokenize=False,
                                         add_generation_prompt=True, **template_kwargs)

"""Tool-calling history (assistant tool calls, tool results) in a form the model's chat template can render.

Agent clients resend the whole conversation, tool calls and results included. A template with tool syntax
(Qwen2.5's, Llama 3.1's) renders OpenAI-shaped history itself; whether a template does is found once, by
rendering a probe conversation and looking for its call and its result in the text. A template without
tool syntax (SmolLM2's plain ChatML) would drop the calls, or print a `tool` role the model never saw, so
for it the history becomes plain text in ordinary turns:

    assistant: <its text, if any>
               Calling tool get_weather with arguments: {"city": "Paris"}
    user:      Tool get_weather returned: {"temp_c": 18}

(consecutive tool results share one user turn). Legacy `function_call` / role `function` are read as a
tool call / tool result.
"""
from __future__ import annotations

import json
from typing import Any

from transformers import PreTrainedTokenizerBase

from gate.turns import TurnError

_PROBE_NAME, _PROBE_RESULT = "gate_probe_function", "gate_probe_result_7f3a"
_PROBE = [
    {"role": "user", "content": "?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_0", "type": "function", "function": {"name": _PROBE_NAME, "arguments": {"x": 1}}}]},
    {"role": "tool", "tool_call_id": "call_0", "name": _PROBE_NAME, "content": _PROBE_RESULT},
]
_RENDERS: dict[str, bool] = {}  # chat template text -> renders tool history


def renders_tool_history(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer's chat template shows a tool call and its result (probed once per template)."""
    key = str(tokenizer.chat_template)
    if key not in _RENDERS:
        try:
            text = tokenizer.apply_chat_template(_PROBE, tokenize=False)
        except Exception:  # noqa: BLE001 - a template that cannot take the probe has no tool syntax we can use
            text = ""
        _RENDERS[key] = _PROBE_NAME in text and _PROBE_RESULT in text
    return _RENDERS[key]


def has_tool_history(messages: list[dict]) -> bool:
    return any(m["role"] == "tool" or m.get("tool_calls") for m in messages)


def tool_calls(message: dict, i: int) -> list[dict]:
    """An assistant message's calls in OpenAI's shape (legacy `function_call` included); bad shapes raise."""
    calls = list(message.get("tool_calls") or [])
    if message.get("function_call"):
        calls.append({"type": "function", "function": message["function_call"]})
    out = []
    for j, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise TurnError(f"messages[{i}].tool_calls[{j}] needs a function with a name", param="messages")
        arguments = function.get("arguments", "{}")
        if not isinstance(arguments, (str, dict)):
            raise TurnError(f"messages[{i}].tool_calls[{j}].function.arguments must be a JSON string",
                            param="messages")
        out.append({"id": call.get("id"), "type": "function",
                    "function": {"name": function["name"], "arguments": arguments}})
    return out


def for_template(tokenizer: PreTrainedTokenizerBase, messages: list[dict]) -> list[dict]:
    """The messages as this tokenizer's template should get them: as they are without tool history, OpenAI's
    shape (arguments as objects, as transformers' templates expect) where it renders tools, else plain text."""
    if not has_tool_history(messages):
        return messages
    if renders_tool_history(tokenizer):
        return [_with_argument_objects(m) for m in messages]
    return as_plain_turns(messages)


def _with_argument_objects(message: dict) -> dict:
    if not message.get("tool_calls"):
        return message
    calls = [{**c, "function": {**c["function"], "arguments": _as_object(c["function"]["arguments"])}}
             for c in message["tool_calls"]]
    return {**message, "tool_calls": calls}


def _as_object(arguments: str | dict) -> Any:
    """A JSON-object string becomes the object; anything else stays as sent."""
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return arguments
    return parsed if isinstance(parsed, dict) else arguments


def _as_text(arguments: str | dict) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)


def as_plain_turns(messages: list[dict]) -> list[dict]:
    """Tool history as ordinary text turns, for templates without tool syntax (see the module docstring)."""
    names = {c["id"]: c["function"]["name"] for m in messages for c in m.get("tool_calls") or [] if c.get("id")}
    out: list[dict] = []
    results_open = False  # the last turn is a user turn made of tool results: later results join it
    for m in messages:
        if m["role"] == "tool":
            name = m.get("name") or names.get(m.get("tool_call_id")) or "call"
            line = f"Tool {name} returned: {m['content']}"
            if results_open:
                out[-1] = {"role": "user", "content": f"{out[-1]['content']}\n\n{line}"}
            else:
                out.append({"role": "user", "content": line})
            results_open = True
            continue
        results_open = False
        if m.get("tool_calls"):
            lines = [f"Calling tool {c['function']['name']} with arguments: {_as_text(c['function']['arguments'])}"
                     for c in m["tool_calls"]]
            out.append({"role": m["role"], "content": "\n".join(filter(None, [m["content"], *lines]))})
        else:
            out.append(m)
    return out

"""Tool-calling history in the prompt: natively where the chat template has tool syntax, as text where it has none.

The native case uses a byte-level tokenizer with a template written in Qwen2.5's style (tool calls as
<tool_call> JSON, results as <tool_response>); the fallback case is the default model's own ChatML template.
"""
import pytest

from gate.engine.chat import normalize_messages, render_prompt
from gate.engine.tool_history import renders_tool_history
from gate.turns import TurnError
from test_chat import CHATML_TEMPLATE, QWEN3_SPECIALS, byte_tokenizer

QWEN_TOOLS_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m.role == 'assistant' and m.tool_calls %}{{ '<|im_start|>assistant\\n' }}"
    "{% if m.content %}{{ m.content + '\\n' }}{% endif %}"
    "{% for c in m.tool_calls %}{{ '<tool_call>\\n{\"name\": \"' + c.function.name + '\", \"arguments\": ' }}"
    "{{ c.function.arguments | tojson }}{{ '}\\n</tool_call>' }}{% endfor %}{{ '<|im_end|>\\n' }}"
    "{% elif m.role == 'tool' %}{{ '<|im_start|>user\\n<tool_response>\\n' + m.content + '\\n</tool_response><|im_end|>\\n' }}"
    "{% else %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
REFUSING_TEMPLATE = ("{% for m in messages %}{% if loop.index0 and m.role == messages[loop.index0 - 1].role %}"
                     "{{ raise_exception('roles must alternate') }}{% endif %}{{ m.content }}{% endfor %}")

HISTORY = [
    {"role": "user", "content": "Weather in Paris and the time?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "c2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": '{"temp_c": 18}'},
    {"role": "tool", "tool_call_id": "c2", "content": "noon"},
]


def test_a_template_with_tool_syntax_renders_the_history_itself():
    tok = byte_tokenizer(QWEN3_SPECIALS, QWEN_TOOLS_TEMPLATE)
    assert renders_tool_history(tok)
    prompt = render_prompt(tok, normalize_messages(HISTORY), None)
    assert '{"name": "get_weather", "arguments": {"city": "Paris"}}' in prompt  # an object, not a quoted string
    assert "<tool_response>\n{\"temp_c\": 18}\n</tool_response>" in prompt and "<tool_response>\nnoon\n" in prompt


def test_chatml_without_tool_syntax_gets_the_history_as_text_turns(engine):
    assert not renders_tool_history(engine.tokenizer)
    prompt = render_prompt(engine.tokenizer, normalize_messages(HISTORY), None)
    assert ("<|im_start|>assistant\nCalling tool get_weather with arguments: {\"city\": \"Paris\"}\n"
            "Calling tool get_time with arguments: {}<|im_end|>") in prompt
    assert ("<|im_start|>user\nTool get_weather returned: {\"temp_c\": 18}\n\nTool get_time returned: noon"
            "<|im_end|>\n<|im_start|>assistant\n") in prompt  # both results in one user turn, named by call id
    assert "<|im_start|>tool" not in prompt


def test_legacy_function_call_and_function_role(engine):
    legacy = [HISTORY[0], {"role": "assistant", "function_call": {"name": "get_time", "arguments": "{}"}},
              {"role": "function", "name": "get_time", "content": "noon"}]
    prompt = render_prompt(engine.tokenizer, normalize_messages(legacy), None)
    assert "Calling tool get_time with arguments: {}" in prompt and "Tool get_time returned: noon" in prompt


def test_history_without_tools_is_untouched(engine):
    plain = [{"role": "user", "content": "hi"}]
    tok = byte_tokenizer(QWEN3_SPECIALS, CHATML_TEMPLATE)
    assert render_prompt(tok, normalize_messages(plain), None) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize("messages, code", [
    ([{"role": "user", "content": "hi \ud800"}], "invalid_unicode"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "invalid_messages"),
], ids=["lone surrogate", "template refuses"])
def test_what_cannot_be_rendered_is_the_requests_fault(messages, code):
    tok = byte_tokenizer(QWEN3_SPECIALS, REFUSING_TEMPLATE)
    with pytest.raises(TurnError) as err:
        render_prompt(tok, normalize_messages(messages), None)
    assert err.value.code == code and err.value.param == "messages"


def test_malformed_tool_calls_are_refused():
    with pytest.raises(TurnError, match=r"messages\[1\]\.tool_calls\[0\]"):
        normalize_messages([HISTORY[0], {"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]}])

"""The OpenAI-compatible server, live on loopback, driven by the real `openai` client and the real Gate.

Generation is kept to a few tokens so the file stays quick on a shared CPU.
"""
from __future__ import annotations

import http.client
import json
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Iterator

import httpx
import openai
import pytest
import torch

from gate.adapters.app import create_app, serving_in_thread
from gate.config import ServerSettings, Settings

SHORT = 8  # max_tokens for ordinary requests
LONG = ServerSettings().max_tokens_limit  # the most a request may ask for: minutes of generation here
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
                                                 "parameters": {"type": "object",
                                                                "properties": {"city": {"type": "string"}}}}}


class HalfSure:
    """Stands in for the sidecar while no checkpoint ships for the default model: P(knows) = 0.5 always."""

    def predict_proba(self, features) -> list[float]:
        return [0.5]


def live_server(settings: Settings, gate):
    return serving_in_thread(create_app(settings, gate))


def server_settings(settings: Settings, **server) -> Settings:
    copy = settings.model_copy(deep=True)
    copy.server = copy.server.model_copy(update={"ui": False, "api_key": None, **server})
    return copy


@pytest.fixture(scope="module")
def gate(any_engine) -> Iterator:
    """The real Gate on the real default model, on each engine in turn (every test here runs on both).
    One torch thread: on a CPU shared with other jobs, two threads spinning at every op's barrier make a
    turn several times slower (measured 1.3 s vs 7-14 s)."""
    from gate.pipeline import Gate
    real = Gate(any_engine.settings, engine=any_engine)
    if real.sidecar is None:
        real.sidecar = HalfSure()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield real
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def settings(gate) -> Settings:
    """The settings the Gate was built with (its engine's)."""
    return gate.settings


@pytest.fixture(scope="module")
def served(settings) -> str:
    return settings.server.model_name or settings.model.id


@pytest.fixture(scope="module")
def base(settings, gate) -> Iterator[str]:
    with live_server(server_settings(settings), gate) as url:
        yield url


@pytest.fixture
def client(base) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=120)


def health(base: str) -> dict:
    return httpx.get(f"{base}/health").json()


def ask(client: openai.OpenAI, served: str, **kw):
    return client.chat.completions.create(model=served, messages=kw.pop("messages", QUESTION),
                                          max_tokens=kw.pop("max_tokens", SHORT), temperature=0, **kw)


# --- happy paths -------------------------------------------------------------------------------------------

def test_plain_completion(client, served, settings, gate):
    reply = ask(client, served)
    assert reply.object == "chat.completion" and reply.model == served and reply.id.startswith("chatcmpl-")
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert 0 < reply.usage.completion_tokens <= SHORT
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    view = reply.gate
    assert view["mode"] == settings.policy.mode and view["decision"] in ("answer", "hedge", "abstain")
    assert view["p_factual"] is None or view["p_factual"] >= view["factual_threshold"]  # a knowledge question
    assert 0.0 <= view["p_knows"] <= 1.0
    assert bool(view["seed"]) == (view["decision"] in gate.engine.profile.prefill_seeds)  # SmolLM2: abstain only
    assert view["probe_ms"] > 0 and view["first_token_ms"] > 0 and view["total_ms"] >= view["first_token_ms"]


def test_stream_reassembles_to_the_non_streamed_reply(client, served):
    whole = ask(client, served)
    chunks = list(ask(client, served, stream=True, stream_options={"include_usage": True}))
    first, *rest = chunks
    assert first.choices[0].delta.role == "assistant" and first.gate["decision"] == whole.gate["decision"]
    assert first.gate["first_token_ms"] is None  # not known before the first token
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    assert rest[-1].choices == [] and rest[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert len({c.id for c in chunks}) == 1


def test_stream_ends_with_done(base, served):
    body = {"model": served, "messages": QUESTION, "max_tokens": 2, "stream": True}
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=60) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [line for line in resp.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"


def test_gate_overrides_take_effect(client, served, settings):
    off = ask(client, served, extra_body={"gate": {"mode": "off"}})
    assert off.gate["mode"] == "off" and off.gate["seed"] is None and off.gate["p_knows"] is None
    sure = ask(client, served, extra_body={"gate": {"mode": "seed", "bands": [0, 0]}})
    assert sure.gate["decision"] == "answer" and sure.gate["bands"] == [0, 0] and sure.gate["seed"] is None
    assert sure.gate["opening"] == ""
    hedged = ask(client, served, extra_body={"gate": {"mode": "seed", "bands": [0, 1]}})  # no channel: said aloud
    opening = settings.policy.openings.hedge
    assert hedged.gate["decision"] == "hedge" and hedged.gate["opening"] == opening
    assert hedged.choices[0].message.content.startswith(opening + " ")
    unsure = ask(client, served, extra_body={"gate": {"mode": "gate", "bands": [1, 1]}})
    assert unsure.gate["decision"] == "abstain" and unsure.gate["abstained"]
    assert unsure.choices[0].message.content == settings.policy.abstention
    assert unsure.usage.completion_tokens == 0 and unsure.choices[0].finish_reason == "stop"


# --- applicability: turns that are not knowledge questions pass ------------------------------------------

NOT_KNOWLEDGE = {
    "greeting": [{"role": "user", "content": "Hi! How are you today?"}],
    "code": [{"role": "user", "content": "Write a Python function that reverses a string."}],
    "own context": [{"role": "user", "content": "My name is Priya and I live in Leeds. Where do I live?"}],
}


def needs_applicability(gate) -> None:
    if gate.applicability is None:
        pytest.skip("no applicability head shipped for the default model")


@pytest.mark.parametrize("kind", sorted(NOT_KNOWLEDGE))
def test_turns_that_are_not_knowledge_questions_pass(client, served, gate, settings, kind):
    needs_applicability(gate)
    reply = ask(client, served, messages=NOT_KNOWLEDGE[kind], extra_body={"gate": {"mode": "gate"}})
    view, text = reply.gate, reply.choices[0].message.content
    assert view["decision"] == "pass" and view["p_factual"] < view["factual_threshold"], view
    assert view["seed"] is None and not view["abstained"] and text and text != settings.policy.abstention
    assert "P(knows)" not in text and not getattr(reply.choices[0].message, "reasoning_content", None)
    first = next(iter(ask(client, served, messages=NOT_KNOWLEDGE[kind], stream=True,
                          extra_body={"gate": {"mode": "gate"}})))
    assert first.gate["decision"] == "pass" and first.gate["seed"] is None


def test_a_trivia_question_is_still_gated(client, served, gate):
    needs_applicability(gate)
    reply = ask(client, served, messages=[{"role": "user", "content": "Which element has the symbol Fe?"}],
                extra_body={"gate": {"mode": "gate"}})
    assert reply.gate["p_factual"] >= reply.gate["factual_threshold"]
    assert reply.gate["decision"] in ("answer", "hedge", "abstain")
    forced = ask(client, served, messages=NOT_KNOWLEDGE["greeting"],
                 extra_body={"gate": {"mode": "gate", "factual_threshold": 0, "bands": [1, 1]}})
    assert forced.gate["decision"] == "abstain" and forced.gate["factual_threshold"] == 0  # per-request override


def test_nulls_mean_unset_and_requests_for_nothing_are_served(base, served):
    """OpenAI allows null for optional fields; asking for no log probabilities, text output or no tool calls
    is served, not refused."""
    body = _body(served, max_tokens=2, n=None, stream=None, stream_options=None, gate=None, stop=None, seed=None,
                 temperature=None, top_p=None, max_completion_tokens=None, logprobs=False, top_logprobs=0,
                 response_format={"type": "text"}, frequency_penalty=0, presence_penalty=None, logit_bias={},
                 modalities=["text"], tool_choice="none", tools=[WEATHER_TOOL], parallel_tool_calls=False,
                 user="someone", metadata={"k": "v"}, store=False)
    resp = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=120)
    assert resp.status_code == 200, resp.text
    reply = resp.json()
    assert reply["choices"][0]["message"]["content"] and reply["gate"]["decision"]


def test_any_number_of_stop_strings(client, served):
    """vLLM takes any number of stop strings (OpenAI's 4 was refused here with 400)."""
    whole = ask(client, served, max_tokens=12).choices[0].message.content
    words = whole.split()
    assert len(words) >= 3
    cut = ask(client, served, max_tokens=12, stop=[f"zz{i}" for i in range(9)] + [words[2]]).choices[0]
    assert cut.finish_reason == "stop" and cut.message.content == whole[:whole.index(words[2])]


def test_a_tiny_top_p_keeps_the_most_likely_token(client, served):
    """temperature 1 with top_p 1e-50 was a 500 (the nucleus rounded to nothing); like vLLM it keeps the top
    token, so the reply is the greedy one."""
    greedy = ask(client, served, max_tokens=6)
    tiny = client.chat.completions.create(model=served, messages=QUESTION, max_tokens=6, temperature=1, top_p=1e-50)
    assert tiny.choices[0].message.content == greedy.choices[0].message.content


def test_a_tool_calling_conversation_gets_a_gated_reply(client, served):
    """An agent's history (an assistant tool call, then the tool's result) through the real openai client: the
    history reaches the prompt (SmolLM2's ChatML has no tool syntax: it is rendered as text turns) and the reply
    is gated as usual."""
    question = [{"role": "user", "content": "What is the weather in Paris right now?"}]
    history = question + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature_c": 18, "sky": "clear"}'},
    ]
    reply = ask(client, served, messages=history, max_tokens=8, tools=[WEATHER_TOOL], tool_choice="none")
    plain = ask(client, served, messages=question, max_tokens=1)
    assert reply.choices[0].message.content and reply.choices[0].message.tool_calls is None
    # Gated as usual: read by both heads. With the tool's result in the conversation the answer need not come
    # from memory, so `pass` is as right as a band decision here.
    assert reply.gate["decision"] in ("answer", "hedge", "abstain", "pass") and 0 <= reply.gate["p_knows"] <= 1
    assert reply.usage.prompt_tokens > plain.usage.prompt_tokens + 20  # the call and the result were rendered
    legacy = history[:1] + [{"role": "assistant", "content": None,
                             "function_call": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
                            {"role": "function", "name": "get_weather", "content": '{"temperature_c": 18}'}]
    assert ask(client, served, messages=legacy, max_tokens=2).usage.prompt_tokens > plain.usage.prompt_tokens + 20


def test_models(client, served):
    assert [m.id for m in client.models.list()] == [served]
    assert client.models.retrieve(served).id == served
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_health(base, served):
    state = health(base)
    assert state["status"] == "ok" and state["model"] == served and not state["running"]


def test_head_and_the_allow_header(base):
    for path in ("/health", "/v1/models"):
        head = httpx.head(f"{base}{path}")
        assert head.status_code == 200 and head.content == b""
    wrong = httpx.get(f"{base}/v1/chat/completions")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    assert httpx.request("TRACE", f"{base}/health").headers["allow"] == "GET"


def test_openapi_document_says_what_the_server_does(base, settings):
    doc = httpx.get(f"{base}/openapi.json").json()
    assert "422" not in str(doc) and "HTTPValidationError" not in doc["components"]["schemas"]
    chat = doc["paths"]["/v1/chat/completions"]["post"]
    assert set(chat["responses"]) == {"200", "400", "401", "404", "413", "415"}
    assert chat["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert set(chat["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    fields = doc["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    assert {o.get("type") for o in fields["stop"]["anyOf"]} == {"string", "array", "null"}
    assert {"type": "integer", "minimum": 1, "maximum": 1} in fields["n"]["anyOf"]
    assert {"type": "integer", "minimum": 1, "maximum": settings.server.max_tokens_limit} in fields["max_tokens"]["anyOf"]
    bands = doc["components"]["schemas"]["GateOptions"]["properties"]["bands"]["anyOf"][0]
    assert bands["prefixItems"] == [{"type": "number"}, {"type": "number"}]
    assert "securitySchemes" not in doc["components"]  # no key configured: no request needs one
    assert set(doc["paths"]["/v1/models/{model_id}"]["get"]["responses"]) == {"200", "401", "404"}


# --- errors ------------------------------------------------------------------------------------------------

def _body(served: str, **fields) -> dict:
    return {"model": served, "messages": QUESTION, "max_tokens": SHORT, **fields}


ERRORS = [  # (case, fields replacing the good body's, status, code, param)
    ("empty messages", {"messages": []}, 400, "too_short", "messages"),
    ("unknown role", {"messages": [{"role": "wizard", "content": "hi"}]}, 400, "literal_error", "messages[0].role"),
    ("image part", {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]},
     400, "unsupported_content", "messages[0].content"),
    ("prompt too long", {"messages": [{"role": "user", "content": "word " * 10_000}]},
     400, "context_length_exceeded", "messages"),
    ("unknown model", {"model": "gpt-4o"}, 404, "model_not_found", "model"),
    ("temperature too high", {"temperature": 5}, 400, "less_than_equal", "temperature"),
    ("temperature as a string", {"temperature": "0.5"}, 400, "float_type", "temperature"),
    ("top_p zero, as vLLM", {"top_p": 0}, 400, "greater_than", "top_p"),
    ("max_tokens zero", {"max_tokens": 0}, 400, "greater_than_equal", "max_tokens"),
    ("max_tokens above the server's limit", {"max_tokens": 8000}, 400, "max_tokens_exceeded", "max_tokens"),
    ("max_completion_tokens above it", {"max_completion_tokens": 5000}, 400, "max_tokens_exceeded",
     "max_completion_tokens"),
    ("seed beyond 64 bits", {"seed": 2 ** 64}, 400, "less_than", "seed"),
    ("n above one", {"n": 2}, 400, "unsupported_parameter", "n"),
    ("empty stop", {"stop": ""}, 400, "string_too_short", "stop[0]"),
    ("bands reversed", {"gate": {"bands": [0.9, 0.1]}}, 400, "invalid_bands", "gate.bands"),
    ("bands out of range", {"gate": {"bands": [0.1, 1.5]}}, 400, "invalid_bands", "gate.bands"),
    ("bands with a boolean", {"gate": {"bands": [0, False]}}, 400, "float_type", "gate.bands[1]"),
    ("unknown mode", {"gate": {"mode": "maybe"}}, 400, "literal_error", "gate.mode"),
    ("logprobs", {"logprobs": True}, 400, "unsupported_parameter", "logprobs"),
    ("top_logprobs", {"top_logprobs": 3}, 400, "unsupported_parameter", "top_logprobs"),
    ("JSON mode", {"response_format": {"type": "json_object"}}, 400, "unsupported_parameter", "response_format"),
    ("tools to call", {"tools": [WEATHER_TOOL]}, 400, "unsupported_parameter", "tools"),
    ("a tool call required", {"tool_choice": "required"}, 400, "unsupported_parameter", "tool_choice"),
    ("a penalty", {"frequency_penalty": 0.5}, 400, "unsupported_parameter", "frequency_penalty"),
    ("logit bias", {"logit_bias": {"42": 5}}, 400, "unsupported_parameter", "logit_bias"),
]


@pytest.mark.parametrize("case, fields, status, code, param", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_the_openai_way(client, served, case, fields, status, code, param):
    body = _body(served, **fields)
    extra = {"gate": body.pop("gate")} if "gate" in body else None
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(**body, extra_body=extra)
    err = caught.value
    assert err.status_code == status
    assert err.body["type"] == ("invalid_request_error") and err.code == code and err.param == param
    assert err.body["message"]


HI = b'"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2'


@pytest.mark.parametrize("raw, code, param", [
    (b'{"model": "x", "messages": [', "invalid_json", None),
    (b'{"model": "smollm2-135m-instruct"}', "missing", "messages"),
    (b'["not", "an", "object"]', "model_attributes_type", None),
    (b'{"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "hi \\ud800"}]}',
     "invalid_unicode", "messages[0].content"),
    (b'{"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": [{"type": "text", '
     b'"text": "\\udfff"}]}]}', "invalid_unicode", "messages[0].content"),
    (b'{"model": "\\ud800", "messages": [{"role": "user", "content": "hi"}]}', "invalid_unicode", "model"),
    (b'{' + HI + b', "stop": ["\\ud800"]}', "invalid_unicode", "stop[0]"),
    (b'{' + HI + b', "stream": true, "seed": 18446744073709551616}', "less_than", "seed"),
], ids=["malformed", "no messages", "not an object", "lone surrogate", "lone surrogate in a part",
        "lone surrogate as the model", "lone surrogate as a stop", "streamed seed beyond 64 bits"])
def test_bodies_the_client_would_not_send(base, raw, code, param):
    """Bodies the openai client cannot even encode (lone surrogates), or that used to crash the server (500)."""
    resp = httpx.post(f"{base}/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"})
    error = resp.json()["error"]
    assert resp.status_code == 400 and error["type"] == "invalid_request_error"
    assert error["code"] == code and error["param"] == param and error["message"]


@pytest.mark.parametrize("content_type", ["text/plain", None, "application/x-www-form-urlencoded"])
def test_a_body_not_sent_as_json_is_told_so(base, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    resp = httpx.post(f"{base}/v1/chat/completions", content=b"{" + HI + b"}", headers=headers)
    error = resp.json()["error"]
    assert resp.status_code == 415 and error["code"] == "unsupported_media_type"
    assert "application/json" in error["message"] and (content_type or "no Content-Type") in error["message"]


def test_still_serving_after_errors(client, served, base):
    assert ask(client, served, max_tokens=2).choices[0].message.content
    assert health(base)["client_errors"] >= 1 and health(base)["server_errors"] == 0 and not health(base)["running"]


# --- concurrency and disconnects ---------------------------------------------------------------------------

def test_eight_concurrent_clients_all_served(client, served, base):
    before = health(base)["served"]
    questions = [f"Name a famous person born in the year {1900 + 10 * i}." for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda q: ask(client, served, max_tokens=4,
                                              messages=[{"role": "user", "content": q}]), questions))
    assert all(r.choices[0].message.content for r in replies)
    assert len({r.id for r in replies}) == 8
    assert health(base)["served"] == before + 8


@contextmanager
def long_stream(base: str, served: str) -> Iterator[None]:
    """Hold the engine with a long streamed generation; leaving the block hangs up mid-stream."""
    body = _body(served, messages=[{"role": "user", "content": "Write a very long story about a dragon."}],
                 max_tokens=LONG, stream=True, gate={"mode": "off"})
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=60) as resp:
        lines = resp.iter_lines()  # held: dropping a half-read iterator would hang up at once
        for line in lines:
            if '"content":"' in line and '"role"' not in line:  # a real token arrived: generation is running
                break
        yield


def wait_for(base: str, key: str, value, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while health(base)[key] != value:
        assert time.monotonic() < deadline, f"/health {key} never became {value}: {health(base)}"
        time.sleep(0.02)


def test_disconnected_stream_frees_the_engine(client, served, base):
    cancelled = health(base)["cancelled"]
    with long_stream(base, served):
        assert health(base)["running"]
    wait_for(base, "running", False)  # within seconds, not the minutes LONG tokens would take
    assert health(base)["cancelled"] == cancelled + 1
    assert ask(client, served, max_tokens=2).choices[0].message.content


def test_abandoned_non_streamed_request_is_called_off(client, served, base):
    cancelled = health(base)["cancelled"]
    body = _body(served, messages=[{"role": "user", "content": "Write a very long story about a dragon."}],
                 max_tokens=LONG, gate={"mode": "off"})
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{base}/v1/chat/completions", json=body, timeout=httpx.Timeout(60, read=1.5))
    wait_for(base, "running", False)
    assert health(base)["cancelled"] == cancelled + 1


def test_queue_is_first_come_first_served_and_leavers_leave_it(client, served, base, gate):
    if gate.engine.max_turns > 1:
        pytest.skip("this engine serves turns at once (see test_turns_run_alongside_a_long_stream)")
    before = health(base)
    done: list[str] = []

    def queued(name: str) -> None:
        ask(client, served, max_tokens=2)
        done.append(name)

    with ThreadPoolExecutor(3) as pool, long_stream(base, served):
        for i, name in enumerate("ABC", start=1):
            pool.submit(queued, name)
            wait_for(base, "waiting", i)
        with pytest.raises(httpx.ReadTimeout):  # a fourth client gives up while queued ...
            httpx.post(f"{base}/v1/chat/completions", json=_body(served), timeout=httpx.Timeout(60, read=0.5))
        wait_for(base, "waiting", 3)  # ... and leaves the queue while the engine is still busy
        assert health(base)["running"]
    wait_for(base, "served", before["served"] + 3, within=60)
    assert done == ["A", "B", "C"]
    assert health(base)["cancelled"] == before["cancelled"] + 1  # only the long stream; the leaver never ran


def test_turns_run_alongside_a_long_stream(client, served, base, gate):
    """The vLLM engine: short turns are served while a long generation streams, none waits in the queue."""
    if gate.engine.max_turns == 1:
        pytest.skip("this engine serves one turn at a time (see the queue test)")
    before = health(base)
    with ThreadPoolExecutor(3) as pool, long_stream(base, served):
        replies = list(pool.map(lambda i: ask(client, served, max_tokens=3, messages=[
            {"role": "user", "content": f"Say the number {i}."}]), range(3)))
        state = health(base)
        assert state["running"] == 1 and state["waiting"] == 0  # the long stream still runs
    assert all(r.choices[0].message.content for r in replies)
    assert state["served"] == before["served"] + 3
    wait_for(base, "running", 0)


# --- API key -----------------------------------------------------------------------------------------------

def test_api_key_enforced(settings, gate, served):
    with live_server(server_settings(settings, api_key="sesame"), gate) as url:
        for wrong in ("unused", "sesame2"):
            bad = openai.OpenAI(base_url=f"{url}/v1", api_key=wrong, max_retries=0)
            with pytest.raises(openai.AuthenticationError) as caught:
                bad.models.list()
            assert caught.value.code == "invalid_api_key"
            with pytest.raises(openai.AuthenticationError):
                ask(bad, served, max_tokens=1)
        assert httpx.post(f"{url}/v1/chat/completions", json=_body(served)).status_code == 401
        good = openai.OpenAI(base_url=f"{url}/v1", api_key="sesame", max_retries=0)
        assert [m.id for m in good.models.list()] == [served]
        assert ask(good, served, max_tokens=1).usage.completion_tokens <= 1
        assert httpx.get(f"{url}/health").status_code == 200


def test_ui_mounted_beside_the_api(settings, gate):
    with live_server(server_settings(settings, ui=True), gate) as url:
        page = httpx.get(f"{url}/ui/", follow_redirects=True, timeout=60)
        assert page.status_code == 200 and "gradio" in page.text.lower()
        assert httpx.get(f"{url}/ui/config", timeout=60).status_code == 200
        assert httpx.get(f"{url}/health").json()["status"] == "ok"


@pytest.mark.parametrize("key", ["sesame", "sésame-ключ"], ids=["ascii", "non-ascii"])
def test_ui_behind_the_api_key(settings, gate, key):
    """A non-ASCII password was a plain-text 500 (str comparison refuses non-ASCII); now it is just wrong."""
    with live_server(server_settings(settings, ui=True, api_key=key), gate) as url:
        assert httpx.get(f"{url}/ui/config", timeout=60).status_code == 401
        with httpx.Client(base_url=url, timeout=60, follow_redirects=True) as client:
            for wrong in ("wrong", "fälsch"):
                assert client.post("/ui/login", data={"username": "x", "password": wrong}).status_code == 400
            assert client.post("/ui/login", data={"username": "x", "password": key}).status_code == 200
            assert client.get("/ui/config").status_code == 200


def test_a_non_ascii_api_key_is_read_as_utf8(settings, gate):
    """Header bytes arrive decoded as latin-1: the key used to match only when sent as latin-1, not UTF-8."""
    key = "sésame-ключ"
    with live_server(server_settings(settings, api_key=key), gate) as url:
        def models(token: bytes) -> int:
            return httpx.get(f"{url}/v1/models", headers={"Authorization": b"Bearer " + token}).status_code
        assert models(key.encode("utf-8")) == 200
        assert models("sésame".encode("latin-1")) == 401 and models(b"sesame") == 401


# --- limits and failures -----------------------------------------------------------------------------------

def test_an_oversized_body_gets_413_before_it_is_read(base, settings):
    limit = settings.server.max_body_bytes
    big = b'{"model": "x", "messages": [{"role": "user", "content": "' + b"a" * limit + b'"}]}'
    for content in (big, iter([big[i:i + 65536] for i in range(0, len(big), 65536)])):  # declared, then chunked
        resp = httpx.post(f"{base}/v1/chat/completions", content=content,
                          headers={"Content-Type": "application/json"}, timeout=60)
        error = resp.json()["error"]
        assert resp.status_code == 413 and error["code"] == "request_too_large" and str(limit) in error["message"]


def test_a_huge_prompt_does_not_hold_up_other_turns(settings, gate, served):
    """Tokenising a multi-megabyte message takes seconds: it runs in a worker thread outside the queue, so a
    normal request sent just after it is answered first (it used to wait for the huge one's 400)."""
    with live_server(server_settings(settings, max_body_bytes=16 * 2 ** 20), gate) as url:
        huge = _body(served, messages=[{"role": "user", "content": "word " * 600_000}])
        finished: dict[str, float] = {}

        def post(name: str, body: dict) -> int:
            status = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120).status_code
            finished[name] = time.monotonic()
            return status

        with ThreadPoolExecutor(2) as pool:
            heavy = pool.submit(post, "huge", huge)
            time.sleep(0.5)
            normal = pool.submit(post, "normal", _body(served, max_tokens=2))
            assert normal.result() == 200 and heavy.result() == 400
        assert finished["normal"] < finished["huge"]


class FaultyGate:
    """The real Gate, but a turn whose message is BOOM fails inside it: an injected fault (no real input is known
    to crash the server any more), to see how the server survives one."""
    BOOM = "please crash"

    def __init__(self, gate):
        self.gate, self.engine = gate, gate.engine

    def prepare(self, messages, overrides):
        if messages[-1]["content"] == self.BOOM:
            raise RuntimeError("injected fault")
        return self.gate.prepare(messages, overrides)

    def run(self, turn):
        return self.gate.run(turn)


def test_a_server_error_keeps_the_connection_and_is_counted_apart(settings, gate, served):
    """uvicorn used to drop a keep-alive connection after a 500 without `Connection: close`, so the client's
    next request on it failed. Now the 500 is an OpenAI-style error and the same connection serves on."""
    with live_server(server_settings(settings), FaultyGate(gate)) as url:
        host, port = url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=120)

        def post(content: str) -> tuple[int, dict]:
            body = json.dumps(_body(served, max_tokens=2, messages=[{"role": "user", "content": content}]))
            conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())

        status, crashed = post(FaultyGate.BOOM)
        socket_used = conn.sock
        assert status == 500 and crashed["error"]["type"] == "server_error"
        status, reply = post("hi")
        assert status == 200 and reply["choices"][0]["message"]["content"] and conn.sock is socket_used
        conn.close()
        httpx.post(f"{url}/v1/chat/completions", json=_body(served, n=3))
        counts = health(url)
        assert counts["server_errors"] == 1 and counts["client_errors"] == 1 and counts["served"] == 1


def test_cors_is_off_by_default_and_on_for_configured_origins(base, settings, gate):
    preflight = {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"}
    off = httpx.options(f"{base}/v1/chat/completions", headers=preflight)
    assert off.status_code == 405 and "access-control-allow-origin" not in off.headers
    with live_server(server_settings(settings, cors_origins=["http://localhost:3000"]), gate) as url:
        on = httpx.options(f"{url}/v1/chat/completions", headers=preflight)
        assert on.status_code == 200 and on.headers["access-control-allow-origin"] == "http://localhost:3000"
        assert "POST" in on.headers["access-control-allow-methods"]
        listed = httpx.get(f"{url}/v1/models", headers={"Origin": "http://localhost:3000"})
        assert listed.headers["access-control-allow-origin"] == "http://localhost:3000"
        elsewhere = httpx.get(f"{url}/v1/models", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in elsewhere.headers

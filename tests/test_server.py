"""The OpenAI-compatible server, live on loopback, driven by the real `openai` client and the real Gate.

Generation is kept to a few tokens so the file stays quick on a shared CPU.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Iterator

import httpx
import openai
import pytest
import torch

from gate.adapters.app import create_app, serving_in_thread
from gate.config import Settings

SHORT = 8  # max_tokens for ordinary requests
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


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

def test_plain_completion(client, served, settings):
    reply = ask(client, served)
    assert reply.object == "chat.completion" and reply.model == served and reply.id.startswith("chatcmpl-")
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert 0 < reply.usage.completion_tokens <= SHORT
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    view = reply.gate
    assert view["mode"] == settings.policy.mode and view["decision"] in ("answer", "hedge", "abstain")
    assert 0.0 <= view["p_knows"] <= 1.0 and view["seed"]
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
    assert sure.gate["decision"] == "answer" and sure.gate["bands"] == [0, 0] and sure.gate["seed"]
    unsure = ask(client, served, extra_body={"gate": {"mode": "gate", "bands": [1, 1]}})
    assert unsure.gate["decision"] == "abstain" and unsure.gate["abstained"]
    assert unsure.choices[0].message.content == settings.policy.abstention
    assert unsure.usage.completion_tokens == 0 and unsure.choices[0].finish_reason == "stop"


def test_models(client, served):
    assert [m.id for m in client.models.list()] == [served]
    assert client.models.retrieve(served).id == served
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_health(base, served):
    state = health(base)
    assert state["status"] == "ok" and state["model"] == served and not state["running"]


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
    ("top_p zero", {"top_p": 0}, 400, "greater_than", "top_p"),
    ("max_tokens zero", {"max_tokens": 0}, 400, "greater_than_equal", "max_tokens"),
    ("n above one", {"n": 2}, 400, "n_not_supported", "n"),
    ("five stops", {"stop": list("abcde")}, 400, "too_long", "stop"),
    ("empty stop", {"stop": ""}, 400, "string_too_short", "stop[0]"),
    ("bands reversed", {"gate": {"bands": [0.9, 0.1]}}, 400, "invalid_bands", "gate.bands"),
    ("bands out of range", {"gate": {"bands": [0.1, 1.5]}}, 400, "invalid_bands", "gate.bands"),
    ("unknown mode", {"gate": {"mode": "maybe"}}, 400, "literal_error", "gate.mode"),
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


@pytest.mark.parametrize("raw, code, param", [
    (b'{"model": "x", "messages": [', "invalid_json", None),
    (b'{"model": "smollm2-135m-instruct"}', "missing", "messages"),
    (b'["not", "an", "object"]', "model_attributes_type", None),
], ids=["malformed", "no messages", "not an object"])
def test_bodies_the_client_would_not_send(base, raw, code, param):
    resp = httpx.post(f"{base}/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"})
    error = resp.json()["error"]
    assert resp.status_code == 400 and error["type"] == "invalid_request_error"
    assert error["code"] == code and error["param"] == param and error["message"]


def test_still_serving_after_errors(client, served, base):
    assert ask(client, served, max_tokens=2).choices[0].message.content
    assert health(base)["failed"] >= 1 and not health(base)["running"]


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
                 max_tokens=2000, stream=True, gate={"mode": "off"})
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
    wait_for(base, "running", False)  # within seconds, not the minutes 2,000 tokens would take
    assert health(base)["cancelled"] == cancelled + 1
    assert ask(client, served, max_tokens=2).choices[0].message.content


def test_abandoned_non_streamed_request_is_called_off(client, served, base):
    cancelled = health(base)["cancelled"]
    body = _body(served, messages=[{"role": "user", "content": "Write a very long story about a dragon."}],
                 max_tokens=2000, gate={"mode": "off"})
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


def test_ui_behind_the_api_key(settings, gate):
    with live_server(server_settings(settings, ui=True, api_key="sesame"), gate) as url:
        assert httpx.get(f"{url}/ui/config", timeout=60).status_code == 401
        with httpx.Client(base_url=url, timeout=60, follow_redirects=True) as client:
            assert client.post("/ui/login", data={"username": "x", "password": "wrong"}).status_code == 400
            assert client.post("/ui/login", data={"username": "x", "password": "sesame"}).status_code == 200
            assert client.get("/ui/config").status_code == 200

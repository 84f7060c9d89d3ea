"""Decoding from the probe's cache, stop strings, streaming and turn errors, on the default model."""
import pytest
import torch

from gate.config import Seeds
from gate.engine.chat import seed_opening
from gate.engine.generate import SamplingParams, continue_tokens, pick
from gate.engine.reply import IncrementalDecoder
from gate.policy import seed_text
from gate.turns import Delta, GateView, PromptTooLong, TurnError, TurnOverrides, TurnResult

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
SEED = "I'm fairly sure I know this (P(knows) = 90%). I'll answer directly and briefly.\n"


def test_continuing_the_probe_cache_equals_generating_from_scratch(engine):
    """Greedy: probe(prompt) + seed tokens appended to its cache == a fresh generate() on prompt + seed."""
    ids, mask = engine.encode([engine.prompt(QUESTION)])
    seed_ids = engine.tokenizer(SEED, add_special_tokens=False, return_tensors="pt")["input_ids"].to(engine.device)
    eos = engine.eos_ids
    probe = engine.probe_ids(ids, mask, [engine.tail_span(ids.shape[1])])
    steps = continue_tokens(engine.model, probe.capture, SamplingParams(max_tokens=16), eos, seed_ids)
    ours = [int(t[0]) for t in steps]
    full = torch.cat([ids, seed_ids], dim=1)
    ref = engine.model.generate(full, attention_mask=torch.ones_like(full), max_new_tokens=16, do_sample=False,
                                eos_token_id=eos, pad_token_id=eos[0])[0, full.shape[1]:].tolist()
    assert ours[:len(ref)] == ref
    assert len(ours) == len(ref)


def test_sampling_with_a_seed_repeats(make_gate):
    gate = make_gate(mode="off")
    ov = TurnOverrides(temperature=1.0, top_p=0.9, seed=7, max_tokens=8)
    assert gate.chat(QUESTION, ov).content == gate.chat(QUESTION, ov).content


def test_a_top_p_below_float32_resolution_keeps_the_top_token():
    """top_p = 1e-50 rounds to 0 in float32; the nucleus must still hold the most likely token (it held none)."""
    logits = torch.tensor([[0.1, 3.0, -1.0, 2.9], [5.0, 0.0, 0.0, 0.0]])
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        tok = pick(logits, SamplingParams(temperature=1.0, top_p=1e-50), generator)
        assert tok.tolist() == [1, 0]


def test_stop_string_ends_the_answer(make_gate):
    gate = make_gate(mode="off")
    full = gate.chat(QUESTION, TurnOverrides(max_tokens=16)).content
    assert "Paris" in full
    cut = gate.chat(QUESTION, TurnOverrides(max_tokens=16, stop=["Paris", "zzz"]))
    assert cut.content == full[:full.index("Paris")] and cut.finish_reason == "stop"


def test_stream_reassembles_to_the_whole_reply(make_gate):
    gate = make_gate(0.2)  # abstain: the one decision SmolLM2's profile seeds (a hidden prefill)
    ov = TurnOverrides(mode="seed", max_tokens=12)
    events = list(gate.stream(QUESTION, ov))
    assert isinstance(events[0], GateView) and isinstance(events[-1], TurnResult)
    assert all(isinstance(e, Delta) for e in events[1:-1])
    result = events[-1]
    assert result.gate.decision == "abstain" and result.gate.seed_text and "20%" in result.gate.seed_text
    text = {"reasoning": "", "content": ""}
    for e in events[1:-1]:
        text[e.channel] += e.text
    assert (text["reasoning"], text["content"]) == (result.reasoning, result.content)
    assert result.content == gate.chat(QUESTION, ov).content
    assert 0 < result.completion_tokens <= 12 and result.prompt_tokens > 0
    assert 0 < result.gate.probe_ms <= result.first_token_ms <= result.total_ms


def test_closing_a_stream_frees_the_gate(make_gate):
    gate = make_gate(0.9)
    stream = gate.stream(QUESTION, TurnOverrides(mode="seed", max_tokens=50))
    next(stream), next(stream)
    assert gate.lock.locked()
    stream.close()
    assert not gate.lock.locked()


def test_incremental_decoding_keeps_multibyte_characters(engine):
    text = "Zürich — 東京 🙂 naïve"
    ids = engine.tokenizer(text, add_special_tokens=False)["input_ids"]
    dec = IncrementalDecoder(engine.tokenizer)
    pieces = [dec.push(i) for i in ids] + [dec.flush()]
    assert "".join(pieces) == engine.tokenizer.decode(ids) == text
    assert not any("\ufffd" in p for p in pieces)


def test_bad_requests_raise_before_the_turn(make_gate):
    gate = make_gate(0.9)
    with pytest.raises(PromptTooLong) as err:
        gate.stream([{"role": "user", "content": "word " * 9000}])
    assert err.value.param == "messages" and err.value.code == "context_length_exceeded"
    for ov, param in [(TurnOverrides(temperature=5.0), "temperature"), (TurnOverrides(max_tokens=0), "max_tokens"),
                      (TurnOverrides(bands=(0.9, 0.1)), "bands"), (TurnOverrides(mode="loud"), "mode")]:
        with pytest.raises(TurnError) as err:
            gate.stream(QUESTION, ov)
        assert err.value.param == param
    with pytest.raises(TurnError):
        gate.stream([{"role": "robot", "content": "hi"}])
    assert not gate.lock.locked()


def test_concurrent_turns_are_served_one_at_a_time(make_gate):
    from concurrent.futures import ThreadPoolExecutor
    gate = make_gate(mode="off")
    questions = [[{"role": "user", "content": f"What is {i} plus {i}?"}] for i in range(3)]
    ov = TurnOverrides(max_tokens=4)
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(lambda q: gate.chat(q, ov).content, questions))
    assert together == [gate.chat(q, ov).content for q in questions]


def test_a_turn_that_passes_is_generated_plainly(make_gate):
    """Below the applicability threshold: decision `pass`, no seed, no abstention even in gate mode, and the reply
    is exactly the `off` baseline's (greedy)."""
    greeting = [{"role": "user", "content": "Hi! How are you today?"}]
    ov = TurnOverrides(max_tokens=10)
    base = make_gate(mode="off").chat(greeting, ov)
    passed = make_gate(0.05, factual=0.1, mode="gate").chat(greeting, ov)
    assert passed.gate.decision == "pass" and passed.gate.seed_text is None and passed.gate.p_factual == 0.1
    assert passed.finish_reason != "abstain" and passed.content == base.content
    gated = make_gate(0.05, factual=0.9, mode="gate").chat(greeting, ov)
    assert gated.gate.decision == "abstain" and gated.finish_reason == "abstain"
    per_call = make_gate(0.05, factual=0.9, mode="gate").chat(greeting, TurnOverrides(max_tokens=10, factual_threshold=0.95))
    assert per_call.gate.decision == "pass" and per_call.gate.factual_threshold == 0.95


@pytest.mark.parametrize("decision", ["answer", "hedge", "abstain"])
def test_the_token_the_model_writes_after_a_seed_is_fed_with_it(any_engine, decision):
    """SmolLM2 writes a lone newline right after a hidden-prefill seed (its profile's `after_seed`): fed with the
    seed, the first generated token is the reply's text, and greedy decoding gives the same reply one step sooner."""
    engine, params = any_engine, SamplingParams(max_tokens=10)
    newline = engine.tokens("\n")
    assert engine.profile.after_seed == "\n" and len(newline) == 1
    for question in ("What is the capital of France?", "Who wrote the novel Moby-Dick?"):
        prompt = engine.prompt([{"role": "user", "content": question}])
        ids, seed = engine.tokens(prompt), seed_text(Seeds(), decision, 0.55)
        opening = engine.tokens(seed_opening(prompt, engine.thinking, seed))
        assert engine.seed_ids(prompt, seed) == opening + newline
        free = list(engine.read(ids, probe=False).tokens(opening, params))
        fed = list(engine.read(ids, probe=False).tokens(engine.seed_ids(prompt, seed), params))
        assert free[0] == newline[0] and fed[0] != newline[0]
        assert fed[:len(free) - 1] == free[1:]

"""One sidecar for both engines: the vLLM engine's features (read in its worker during vLLM's own prefill)
agree with the transformers engine's on the same token ids, closely enough that the shipped checkpoint
gives the same P(knows).

Stated tolerances (both engines float32 on the default model; features are stored as float16, whose
spacing is ~1e-3 relative): per-layer and global features within 0.02 + 1% of the transformers value, the
hidden-state reads (final position and the latest user message's average) within 0.05 + 1%, lens top-1 tokens
the same at ≥ 95% of layers, P(knows) within 0.02.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from conftest import VLLM_TEST_ARGS
from gate.engine.generate import SamplingParams
from gate.applicability import load_for as applicability_for
from gate.sidecar import load_for

PROMPTS = [
    "What is the capital of Australia?",
    "Who wrote the novel Moby-Dick?",
    "Which element has the chemical symbol Fe?",
    "In what year did the Berlin Wall fall?",
    "What is the name of the longest river in South America?",
    "Who painted the ceiling of the Sistine Chapel?",
    "What was the name of the ship on which Charles Darwin sailed around the world in the 1830s?",
    "Hi there! How are you today?",
]


def _read(engine, text: str, limit: int | None = None) -> dict:
    """read() arguments for one user turn (cut to `limit` tokens): its ids and its message's span."""
    messages = [{"role": "user", "content": text}]
    prompt = engine.prompt(messages)
    ids = engine.tokens(prompt)[:limit]
    start, end = engine.span(prompt, messages)
    return {"ids": ids, "span": (min(start, len(ids) - 1), min(end, len(ids)))}


def _assert_agree(vllm_features, hf_features) -> None:
    for name, atol in (("layer", 0.02), ("globals", 0.02), ("hidden", 0.05), ("message", 0.05)):
        got, want = (getattr(f, name).astype(np.float32) for f in (vllm_features, hf_features))
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0.01, atol=atol, err_msg=name)
    assert (vllm_features.top_tokens == hf_features.top_tokens).mean() >= 0.95


@pytest.fixture(scope="module")
def reference(engine) -> list:
    """The transformers engine's features, one prompt at a time."""
    return [engine.read(**_read(engine, text), probe=True).features for text in PROMPTS]


def test_features_and_p_knows_agree_across_engines(engine, vllm_engine, reference):
    sidecar = load_for(engine)
    assert sidecar is not None, "the default model ships a sidecar checkpoint"
    assert load_for(vllm_engine) is not None  # the same checkpoint accepts the vLLM engine's signature
    # All eight at once: vLLM batches their prefills into one flattened batch (rows of several requests).
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        got = list(pool.map(lambda t: vllm_engine.read(**_read(engine, t), probe=True).features, PROMPTS))
    for text, mine, want in zip(PROMPTS, got, reference):
        _assert_agree(mine, want)
        p_vllm, p_hf = float(sidecar.predict_proba(mine)[0]), float(sidecar.predict_proba(want)[0])
        assert abs(p_vllm - p_hf) <= 0.02, (text, p_vllm, p_hf)


def test_reading_straddles_two_prefill_chunks(engine, vllm_engine):
    """A prompt of chunk + 2 tokens: its last 4 positions and its message are computed in two steps of vLLM's
    prefill."""
    chunk = VLLM_TEST_ARGS["max_num_batched_tokens"]
    read = _read(engine, "Tell me about rivers. " * 80, chunk + 2)
    assert len(read["ids"]) == chunk + 2 and read["span"][0] < chunk
    _assert_agree(vllm_engine.read(**read, probe=True).features, engine.read(**read, probe=True).features)


def test_repeated_prompt_reads_the_cache_up_to_its_last_positions(engine, vllm_engine):
    """A prompt seen before (here 80 tokens: two full blocks cached) is probed again from the prefix cache,
    except its last positions and its message, which the probe computes: the features are the same, with the
    message read over a span inside the cached blocks or over the tail only."""
    read = _read(engine, "Tell me about rivers. " * 20, 80)
    for span in (read["span"], (76, 80)):
        want = engine.read(read["ids"], probe=True, span=span).features
        for _ in range(2):
            _assert_agree(vllm_engine.read(read["ids"], probe=True, span=span).features, want)


def test_probe_view_lens_agrees(engine, vllm_engine):
    read = _read(engine, PROMPTS[2])
    mine, want = vllm_engine.read(**read, probe=True, lens_top=3).lens, engine.read(**read, probe=True, lens_top=3).lens
    assert len(mine) == len(want) == engine.shape.num_layers
    assert [[t for t, _ in layer] for layer in mine[-3:]] == [[t for t, _ in layer] for layer in want[-3:]]
    np.testing.assert_allclose([[p for _, p in layer] for layer in mine], [[p for _, p in layer] for layer in want],
                               atol=1e-3)


def test_a_passing_turn_continues_its_probe(engine, vllm_engine, reference):
    """Given the turn's sampling, the probe is a session that sampled the reply's first token: the same
    features; `tokens([])` streams that token and the session goes on from it, and `tokens(seed)` computes the seed
    on the prompt's KV in the same request; either way the tokens are those of a plain request (float32; greedy, and
    sampled with a seed)."""
    params = SamplingParams(max_tokens=8)
    read = vllm_engine.read(**_read(engine, PROMPTS[0]), probe=True, params=params)
    _assert_agree(read.features, reference[0])
    session = read.session
    got = list(read.tokens([], params))
    assert got == list(vllm_engine.read(_read(engine, PROMPTS[0])["ids"], probe=False).tokens([], params))
    assert len(got) == 8 and session.stream.task.done() and not session.stream.task.cancelled()
    seed = engine.tokens("I am sure of this.\n")
    seeded = vllm_engine.read(**_read(engine, PROMPTS[1]), probe=True, params=params)
    session = seeded.session
    got = list(seeded.tokens(seed, params))
    assert got == list(vllm_engine.read(_read(engine, PROMPTS[1])["ids"], probe=False).tokens(seed, params))
    assert len(got) == 8 and session.stream.task.done() and not session.stream.task.cancelled()
    for read in (read, seeded):
        read.close()
    sampled = SamplingParams(max_tokens=8, temperature=1.0, top_p=0.95, seed=7)  # the same draws as a plain request
    read = vllm_engine.read(**_read(engine, PROMPTS[2]), probe=True, params=sampled)
    got = list(read.tokens([], sampled))
    read.close()
    assert got == list(vllm_engine.read(_read(engine, PROMPTS[2])["ids"], probe=False).tokens([], sampled))


def test_a_probe_session_ends_with_its_turn(engine, vllm_engine):
    """A turn that abstains (its tokens never taken) or stops early ends its session: vLLM keeps no paused request
    (a paused session holds its KV blocks and a running slot)."""
    params = SamplingParams(max_tokens=8)
    abstained = vllm_engine.read(**_read(engine, PROMPTS[0]), probe=True, params=params)
    stopped = vllm_engine.read(**_read(engine, PROMPTS[1]), probe=True, params=params)
    steps = stopped.tokens([], params)
    next(steps)
    steps.close()
    unfinished = vllm_engine._llm.output_processor.get_num_unfinished_requests

    def settles_at(n: int) -> bool:
        deadline = time.monotonic() + 5
        while unfinished() != n and time.monotonic() < deadline:  # aborts reach vLLM's loop a moment later
            time.sleep(0.05)
        return unfinished() == n

    assert settles_at(1)  # the stopped turn's request ended; the abstained turn's session waits for its next input
    abstained.close()
    stopped.close()
    assert settles_at(0)


def test_a_turn_that_exits_early_never_waits_for_the_lens(engine, vllm_engine, reference):
    """The worker sends a probe's residual reads first: the greeting is passed on them alone, and the rest of its
    features still arrive, the same as the transformers engine's, when something reads them."""
    head = applicability_for(vllm_engine)
    read = vllm_engine.read(**_read(engine, PROMPTS[-1]), probe=True)
    assert head.exits_early(read.features).all() and not read.features.lens_read
    _assert_agree(read.features, reference[-1])
    assert read.features.lens_read
    read.close()

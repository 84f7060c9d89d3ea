"""Applicability head: learns which turns are knowledge questions, is calibrated, round-trips, refuses other
models; the shipped head passes non-knowledge turns and gates knowledge questions on the real default model."""
from __future__ import annotations

import copy

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from gate.applicability import Applicability, load_for
from gate.config import FACTUAL_THRESHOLD
from gate.engine.features import Features, LazyFeatures
from gate.sidecar import SidecarMismatch, sidecar_dir
from tests.test_sidecar import SIG, synthetic


@pytest.fixture(scope="module")
def fitted():
    (tr, ytr), (va, yva), (te, yte) = synthetic(600, 0), synthetic(200, 1), synthetic(300, 2)
    return Applicability(SIG).fit(tr, ytr, va, yva), te, yte


def test_learns_and_is_calibrated_for_an_even_prior(fitted):
    head, te, yte = fitted
    p = head.predict_proba(te)
    assert p.shape == (len(yte),) and roc_auc_score(yte, p) > 0.75  # it reads hidden + globals, not layers
    # Calibrated as if both kinds were equally common: the mean P over each class's half sits around 0.5.
    assert abs(0.5 * (p[yte == 1].mean() + p[yte == 0].mean()) - 0.5) < 0.1


def test_round_trip_and_refusal(fitted, tmp_path):
    head, te, _ = fitted
    head.save(tmp_path)
    assert np.allclose(Applicability.load(tmp_path, dict(SIG)).predict_proba(te), head.predict_proba(te))
    with pytest.raises(SidecarMismatch, match="toy/model-a.*toy/model-b"):
        Applicability.load(tmp_path, {**SIG, "model_id": "toy/model-b"})


def _lazy(feats: Features) -> LazyFeatures:
    """The features as a served turn holds them: the trajectory computed only when something reads it."""
    return LazyFeatures(feats.hidden, feats.message, lambda: feats)


def test_the_early_read_decides_sure_turns_without_the_trajectory(fitted):
    head, te, _ = fitted
    head = copy.copy(head)  # a band the synthetic turns fall on both sides of
    head.hp = {**head.hp, "early": (0.2, 0.8)}
    early, p, full = head.exits_early(te), head.predict_proba(te), head.read_proba(te)
    low, high = head.hp["early"]
    assert head.cascades and 0 < early.sum() < len(early)
    assert ((p[early] < low) | (p[early] >= high)).all() and (p[early] < low).any() and (p[early] >= high).any()
    assert np.array_equal(p[~early], full[~early])
    for i in range(len(p)):  # one turn at a time, as served: the lens is read only where the early read is unsure
        lazy = _lazy(te[i:i + 1])
        assert np.isclose(head.predict_proba(lazy)[0], p[i]) and lazy.lens_read == (not early[i])


def test_a_threshold_outside_the_early_band_reads_everything(fitted):
    """A per-request threshold the band does not hold (the band was checked at the served one) turns the cascade off
    for that turn: every turn waits for the full read."""
    head, te, _ = fitted
    head = copy.copy(head)
    head.hp = {**head.hp, "early": (0.2, 0.8)}
    assert head.exits_early(te, threshold=0.5).any() and not head.exits_early(te, threshold=0.9).any()
    assert np.array_equal(head.predict_proba(te, threshold=0.9), head.read_proba(te))
    assert np.array_equal(head.predict_proba(te, threshold=0.1), head.read_proba(te))
    assert np.array_equal(head.predict_proba(te, threshold=0.5), head.predict_proba(te))


def test_a_head_from_before_the_cascade_reads_everything(fitted, tmp_path):
    head, te, _ = fitted
    head.save(tmp_path)
    state = dict(np.load(tmp_path / "applicability.npz"))
    np.savez(tmp_path / "applicability.npz", **{k: v for k, v in state.items() if not k.startswith("early_")})
    old = Applicability.load(tmp_path, dict(SIG))
    assert not old.cascades and not old.exits_early(te).any()
    assert np.array_equal(old.predict_proba(te), head.read_proba(te))


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


CODE = [*_user("Write a Python function that adds two numbers."),
        {"role": "assistant", "content": "def add(a, b):\n    return a + b"}, *_user("Now make it multiply.")]
CAPITALS = [*_user("What is the capital of France?"), {"role": "assistant", "content": "Paris."}, *_user("And Germany?")]
JOKE = [*_user("Tell me a joke."), {"role": "assistant", "content": "Why did the chicken cross the road? To get to the "
                                                                  "other side!"}]
TURNS = {
    False: [_user("Hi! How are you today?"), _user("Write a haiku about autumn."),
            _user("Write a Python function that reverses a string."), _user("Translate to French: I like to read books."),
            _user("My name is Priya and I live in Leeds. Where do I live?"), CODE,
            [*JOKE, *_user("Haha. Now tell me one about cats.")],
            # a made-up fact stated in the turn, asked like trivia: gated (P 0.996) before the `stated` source
            _user("The capital of Zorbia is Quenlo. What is the capital of Zorbia?"),
            # the same with realistic names: P 0.42 before the real stated-fact sources (sciq, squadfact)
            _user("My company, Brightline Ltd, was started by my uncle Tom Baker in 1985. When was Brightline started?")],
    True: [_user("What is the capital of Australia?"), _user("Who wrote the novel Moby-Dick?"),
           _user("I was reading about Shakespeare yesterday. Who wrote Hamlet?"),
           _user("I love history. Who was the first president of the United States?"),
           _user("Which element has the symbol Fe?"), CAPITALS,
           # a question after chit-chat, opened by a reaction: passed (P 0.09) before the `aside` variant
           [*JOKE, *_user("Haha. By the way, who wrote Hamlet?")],
           # asking for a definition or an explanation: passed (P 0.42, 0.03) before `alicewhat` / `fanouttopic`
           _user("What is photosynthesis?"), _user("Tell me about the Roman Empire."),
           # a follow-up about what the reply named: passed (P 0.26) before the `then` variant
           [*_user("Who was the first president of the United States?"),
            {"role": "assistant", "content": "George Washington."}, *_user("When did he die?")]],
}


def test_shipped_head_on_the_real_model(engine):
    if not (sidecar_dir(engine.settings, engine.loaded.model_id) / "applicability.npz").exists():
        pytest.skip("no applicability head shipped for the default model")
    head = load_for(engine)
    for factual, conversations in TURNS.items():   # the whole conversation is read; the latest turn decides
        probe = engine.probe_chats(conversations)
        p = head.predict_proba(probe.features)
        assert ((p >= FACTUAL_THRESHOLD) == factual).all(), (factual, [(c[-1]["content"], round(float(q), 3))
                                                         for c, q in zip(conversations, p)])
    # Served, a greeting and a writing task pass, and a trivia question is gated, on the residual read alone:
    # their lens is never computed. (The capital of Australia needs the full read since the stated-fact sources:
    # its early read is 0.989, just under the band.)
    for conversation in (*TURNS[False][:2], TURNS[True][1]):
        prompt = engine.prompt(conversation)
        read = engine.read(engine.tokens(prompt), probe=True, span=engine.span(prompt, conversation))
        served = head.predict_proba(read.features)[0]
        assert not read.features.lens_read, (conversation[-1]["content"], served)

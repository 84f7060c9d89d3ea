"""Scoring and metrics of the seeding evaluation (pure: no model)."""
from types import SimpleNamespace

import pytest

from gate.config import Settings
from gate.engine.loading import model_slug
from training.evaluate_seeding import run_key, score, summarise

ABSTENTION = "No comment."


def test_score_rules():
    assert score("Paris.\nOr maybe Lyon.", ["Paris"], ABSTENTION) == "correct"
    assert score("I don't know the answer.", ["Paris"], ABSTENTION) == "abstained"
    assert score(ABSTENTION, ["Paris"], ABSTENTION) == "abstained"
    assert score("Lyon.", ["Paris"], ABSTENTION) == "wrong"
    assert score("I'm not sure. I'm not sure.", ["Paris"], ABSTENTION) == "abstained"
    assert score("I'm a helpful AI named SmolLM.", ["Paris"], ABSTENTION) == "abstained"
    assert score("I'm not sure, but I think it is Lyon.", ["Paris"], ABSTENTION) == "wrong"


def test_summary_metrics():
    rows = [  # baseline: 2 correct, 2 wrong; the gate abstains on one wrong and on one correct
        {"golds": ["Paris"], "decision": "answer", "replies": {"off": "Paris", "seed": "Paris", "gate": "Paris"}},
        {"golds": ["Rome"], "decision": "abstain", "replies": {"off": "Rome", "seed": "Rome", "gate": ABSTENTION}},
        {"golds": ["Oslo"], "decision": "hedge", "replies": {"off": "Bergen", "seed": "I think Bergen",
                                                               "gate": "I think Bergen"}},
        {"golds": ["Bern"], "decision": "abstain", "replies": {"off": "Zurich", "seed": "I don't know.",
                                                                "gate": ABSTENTION}},
    ]
    s = summarise(rows, ABSTENTION)
    off, seed, gate = (s["modes"][m] for m in ("off", "seed", "gate"))
    assert (off["accuracy_on_answered"], off["abstention_rate"], off["effective_reliability"]) == (0.5, 0.0, 0.0)
    assert off["confident_wrong_share_of_wrong"] == 1.0 and off["correct_kept"] == 1.0
    assert seed["confident_wrong_share_of_wrong"] == 0.0 and seed["effective_reliability"] == pytest.approx(0.25)
    assert gate["correct_kept"] == 0.5 and gate["abstention_rate"] == 0.5 and gate["effective_reliability"] == 0.0
    assert s["by_decision"]["abstain"] == {"n": 2, "baseline_accuracy": 0.5}


def test_run_key_changes_with_what_a_reply_depends_on(tmp_path):
    """A resumed run reuses a logged reply only if the budget, the policy and the checkpoint are the same."""
    settings = Settings(sidecar_dir=str(tmp_path))
    ckpt = tmp_path / model_slug(settings.model.id)
    ckpt.mkdir()
    (ckpt / "weights.npz").write_bytes(b"v1")
    gate = SimpleNamespace(settings=settings, engine=SimpleNamespace(model_id=settings.model.id))
    key = run_key(gate, 24)
    assert run_key(gate, 24) == key and run_key(gate, 32) != key
    (ckpt / "weights.npz").write_bytes(b"v2")           # a retrained sidecar
    retrained = run_key(gate, 24)
    assert retrained != key
    settings.policy.bands.low = 0.3                     # other bands
    assert run_key(gate, 24) != retrained

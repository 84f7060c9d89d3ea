"""Scoring and metrics of the seeding evaluation (pure: no model)."""
from types import SimpleNamespace

import pytest

from gate.config import Bands, Settings
from gate.models import Profile
from gate.engine.loading import model_slug
from training.evaluate_seeding import (GateWords, all_pairs, evaluate, figure, frontier, head_key, markdown, run_key,
                                      score, summarise, trade_off)

ABSTENTION = "No comment."
SETTINGS_ABSTENTION = Settings().policy.abstention
WORDS = GateWords(ABSTENTION)


def test_score_rules():
    assert score("Paris.\nOr maybe Lyon.", ["Paris"], ABSTENTION) == "correct"
    assert score("I don't know the answer.", ["Paris"], ABSTENTION) == "abstained"
    assert score(ABSTENTION, ["Paris"], ABSTENTION) == "abstained"
    assert score("Lyon.", ["Paris"], ABSTENTION) == "wrong"
    assert score("I'm not sure. I'm not sure.", ["Paris"], ABSTENTION) == "abstained"
    assert score("I'm a helpful AI named SmolLM.", ["Paris"], ABSTENTION) == "abstained"
    assert score("I'm not sure, but I think it is Lyon.", ["Paris"], ABSTENTION) == "wrong"


def _row(gold: str, p: float, off: str, answer: str, hedge: str, abstain: str, p_factual: float = 0.9) -> dict:
    return {"golds": [gold], "p_knows": p, "p_factual": p_factual,
            "replies": {"off": off, "answer": answer, "hedge": hedge, "abstain": abstain}}


ROWS = [  # baseline: 2 correct, 2 wrong (confident); bands 0.4/0.7 answer, abstain, hedge, abstain
    _row("Paris", 0.9, "Paris", "Paris", "I think Paris", "I don't know."),
    _row("Rome", 0.1, "Rome", "Rome", "Maybe Rome", "Rome"),
    _row("Oslo", 0.5, "Bergen", "Bergen", "I think Bergen", "I don't know."),
    _row("Bern", 0.2, "Zurich", "Zurich", "Perhaps Zurich", "I don't know."),
]


def test_summary_metrics():
    """Each mode's reply is the one logged for the decision these bands make."""
    s = summarise(ROWS, WORDS, Bands(low=0.4, high=0.7))
    off, seed, gate = (s["modes"][m] for m in ("off", "seed", "gate"))
    assert (off["accuracy_on_answered"], off["abstention_rate"], off["effective_reliability"]) == (0.5, 0.0, 0.0)
    assert off["confident_wrong_share_of_wrong"] == 1.0 and off["correct_kept"] == 1.0
    # seed: Paris (answer) right, Rome (abstain seed ignored) right, Bergen hedged, Zurich declined
    assert seed["confident_wrong_share_of_wrong"] == 0.0 and seed["effective_reliability"] == pytest.approx(0.25)
    assert seed["correct_kept"] == 1.0
    assert gate["correct_kept"] == 0.5 and gate["abstention_rate"] == 0.5 and gate["effective_reliability"] == 0.0
    assert s["by_decision"]["abstain"] == {"n": 2, "baseline_accuracy": 0.5}
    other = summarise(ROWS, WORDS, Bands(low=0.0, high=0.0))["modes"]["gate"]  # answer everything
    assert other["abstention_rate"] == 0.0 and other["confident_wrong_rate"] == 0.5


def test_pass_answers_plainly():
    """Below the applicability threshold the decision is pass: the plain reply, never a seed or the abstention."""
    rows = [_row("Paris", 0.1, "Paris", "x", "x", "x", p_factual=0.2)]
    s = summarise(rows, WORDS, Bands(low=0.4, high=0.7), threshold=0.5)
    assert s["by_decision"]["pass"]["n"] == 1
    assert s["modes"]["gate"]["correct_kept"] == 1.0 and s["modes"]["seed"]["correct_kept"] == 1.0


def test_the_gates_opening_makes_a_hedge_but_not_an_answer():
    """An opening the gate writes before hedge-seeded replies turns a confident wrong one into a hedge (removed)
    and leaves a correct one correct; outcomes are the model's own words."""
    rows = [_row("Oslo", 0.5, "Bergen", "Bergen", "Bergen", "Bergen"), _row("Rome", 0.5, "Rome", "Rome", "Rome", "x")]
    bands = Bands(low=0.4, high=0.7)
    said = GateWords(ABSTENTION, {"hedge": "I'm not certain about this."})
    assert trade_off(rows, WORDS, bands, 0.5) == {"low": 0.4, "high": 0.7, "correct_kept": 1.0,
                                                       "confident_wrong_removed": 0.0}
    assert trade_off(rows, said, bands, 0.5)["confident_wrong_removed"] == 1.0
    assert trade_off(rows, said, bands, 0.5)["correct_kept"] == 1.0
    assert trade_off(rows, said, Bands(low=0.0, high=0.0), 0.5)["confident_wrong_removed"] == 0.0  # answered


def test_frontier_is_pareto():
    """Kept share falls and removed share rises along the frontier; abstaining on all removes all, keeps none."""
    points = frontier(ROWS, WORDS, 0.5)
    kept = [p["correct_kept"] for p in points]
    removed = [p["confident_wrong_removed"] for p in points]
    assert kept == sorted(kept, reverse=True) and removed == sorted(removed) and len(set(removed)) == len(removed)
    assert points[0]["correct_kept"] == 1.0 and points[-1]["confident_wrong_removed"] == 1.0
    # hedging all but Paris (low 0, 0.5 < high <= 0.9) keeps both correct answers and removes both confident wrong
    assert len(points) == 1 and points[0]["low"] == 0.0 and 0.5 < points[0]["high"] <= 0.9


def test_run_key_changes_with_what_a_reply_depends_on(tmp_path):
    """A resumed run reuses a logged reply only if the budget, the seeds and the checkpoint are the same; the
    bands are scored afterwards, so changing them reuses every row."""
    settings = Settings(sidecar_dir=str(tmp_path))
    ckpt = tmp_path / model_slug(settings.model.id)
    ckpt.mkdir()
    (ckpt / "weights.npz").write_bytes(b"v1")
    gate = SimpleNamespace(settings=settings, engine=SimpleNamespace(model_id=settings.model.id, dtype="torch.float32",
                                                                       profile=Profile()))
    key = run_key(gate, 24)
    assert run_key(gate, 24) == key and run_key(gate, 32) != key
    (ckpt / "weights.npz").write_bytes(b"v2")           # a retrained sidecar
    retrained = run_key(gate, 24)
    assert retrained != key
    head = head_key(gate)
    (ckpt / "applicability.npz").write_bytes(b"h2")     # another applicability head: same replies, new P(factual)
    assert run_key(gate, 24) == retrained and head_key(gate) != head
    settings.policy.bands.low = 0.3                     # other bands: same replies
    settings.policy.openings.hedge = "Not sure:"        # the model never reads the opening: same replies
    assert run_key(gate, 24) == retrained
    gate.engine.dtype = "torch.bfloat16"                # other numerics: asked again
    assert run_key(gate, 24) != retrained
    gate.engine.dtype = "torch.float32"
    settings.policy.abstention = "Pass."                # other texts: asked again
    assert run_key(gate, 24) != retrained
    settings.policy.abstention = SETTINGS_ABSTENTION
    assert run_key(gate, 24) == retrained
    gate.engine.profile = Profile(prefill_seeds=("abstain",))  # answers and hedges no longer seeded: asked again
    assert run_key(gate, 24) != retrained


def test_report_and_figure(tmp_path):
    """The Markdown has a table per set of bands and the frontier; the figure is a PNG."""
    runs = {name: {"bands": [b.low, b.high], "summary": summarise(ROWS, WORDS, b)}
            for name, b in (("configured", Bands(low=0.4, high=0.7)), ("recommended", Bands(low=0.2, high=0.6)))}
    info = {"model": "m", "split": "random/test", "n": 4, "max_tokens": 24, "factual_threshold": 0.5, "note": ""}
    text = markdown(runs, frontier(ROWS, WORDS, 0.5), info)
    assert "## configured bands: low=0.4 high=0.7" in text and "## recommended bands" in text
    assert "| 1.000 | 1.000 | 0.0 |" in text   # the frontier's one point
    marked = {name: run["summary"]["trade_off"] for name, run in runs.items()}
    png = figure(all_pairs(ROWS, WORDS, 0.5), marked, tmp_path / "f.png", "t")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_new_applicability_head_reprobes_without_generating(tmp_path):
    """A resumed run asks nothing again when only the applicability head changed: each logged row gets its
    P(factual) from one probe, and the replies are kept."""
    settings = Settings(sidecar_dir=str(tmp_path))
    ckpt = tmp_path / model_slug(settings.model.id)
    ckpt.mkdir()
    (ckpt / "weights.npz").write_bytes(b"v1")
    (ckpt / "applicability.npz").write_bytes(b"h1")
    calls = {"chat": 0, "probe": 0}
    view = SimpleNamespace(p_knows=0.3, p_factual=0.9, opening="")

    def chat(messages, overrides):
        calls["chat"] += 1
        return SimpleNamespace(content=f"reply {calls['chat']}", gate=view)

    def probe(messages):
        calls["probe"] += 1
        return SimpleNamespace(gate=SimpleNamespace(p_factual=0.2))

    gate = SimpleNamespace(settings=settings, engine=SimpleNamespace(model_id=settings.model.id, dtype="torch.float32",
                                                                       profile=Profile()),
                           chat=chat, probe=probe)
    rows = [{"id": f"q{i}", "source": "red", "category": "c", "question": f"Q{i}?", "golds": ["A"], "label": 0}
            for i in range(3)]
    log = tmp_path / "rows.jsonl"
    first = evaluate(gate, rows, 24, log)
    assert calls == {"chat": 12, "probe": 0} and all(r["p_factual"] == 0.9 for r in first)
    (ckpt / "applicability.npz").write_bytes(b"h2")
    again = evaluate(gate, rows, 24, log)
    assert calls == {"chat": 12, "probe": 3} and all(r["p_factual"] == 0.2 for r in again)
    assert [r["replies"] for r in again] == [r["replies"] for r in first]
    evaluate(gate, rows, 24, log)
    assert calls == {"chat": 12, "probe": 3}

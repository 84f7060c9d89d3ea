"""Applicability head: learns which turns are knowledge questions, is calibrated, round-trips, refuses other
models; the shipped head passes non-knowledge turns and gates knowledge questions on the real default model."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from gate.applicability import Applicability, load_for
from gate.sidecar import SidecarMismatch, sidecar_dir
from tests.test_sidecar import SIG, synthetic


@pytest.fixture(scope="module")
def fitted():
    (tr, ytr), (va, yva), (te, yte) = synthetic(600, 0), synthetic(200, 1), synthetic(300, 2)
    return Applicability(SIG).fit(tr, ytr, va, yva), te, yte


def test_learns_and_is_calibrated(fitted):
    head, te, yte = fitted
    p = head.predict_proba(te)
    assert p.shape == (len(yte),) and roc_auc_score(yte, p) > 0.75  # it reads hidden + globals, not layers
    assert abs(p.mean() - yte.mean()) < 0.1


def test_round_trip_and_refusal(fitted, tmp_path):
    head, te, _ = fitted
    head.save(tmp_path)
    assert np.allclose(Applicability.load(tmp_path, dict(SIG)).predict_proba(te), head.predict_proba(te))
    with pytest.raises(SidecarMismatch, match="toy/model-a.*toy/model-b"):
        Applicability.load(tmp_path, {**SIG, "model_id": "toy/model-b"})


TURNS = {
    False: ["Hi! How are you today?", "Write a haiku about autumn.", "Write a Python function that reverses a string.",
            "Translate to French: I like to read books.", "My name is Priya and I live in Leeds. Where do I live?"],
    True: ["What is the capital of Australia?", "Who wrote the novel Moby-Dick?", "Which element has the symbol Fe?"],
}


def test_shipped_head_on_the_real_model(engine):
    if not (sidecar_dir(engine.settings, engine.loaded.model_id) / "applicability.npz").exists():
        pytest.skip("no applicability head shipped for the default model")
    head = load_for(engine)
    for factual, texts in TURNS.items():
        probe = engine.probe([engine.prompt([{"role": "user", "content": t}]) for t in texts])
        p = head.predict_proba(probe.features)
        assert ((p >= 0.5) == factual).all(), (factual, dict(zip(texts, p.round(3))))

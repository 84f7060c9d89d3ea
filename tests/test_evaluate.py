"""Evaluation runs from the shipped features alone: no model is loaded."""
from __future__ import annotations

import json
import math

import pytest

from gate.engine import loading
from training import evaluate
from training import evaluate_applicability
from training.store import data_dir, load_rows, teaches_knows

SHIPPED = data_dir("smollm2-135m-instruct")


@pytest.mark.skipif(not (SHIPPED / "features.npz").exists(), reason="shipped features not present")
def test_evaluate_from_shipped_features(tmp_path, monkeypatch):
    def no_model(*a, **k):
        raise AssertionError("evaluate must not load a model")
    monkeypatch.setattr(loading, "load_model", no_model)
    monkeypatch.setattr(loading.AutoModelForCausalLM, "from_pretrained", no_model)
    rows = load_rows(SHIPPED / "examples.jsonl")
    rows = [r for r in rows if teaches_knows(r)]   # P(knows) is evaluated on knowledge questions with a short gold
    metrics = evaluate.main(["--out", str(tmp_path), "--fast", "--limit", "1500", "--cv-folds", "0", "--no-applicability",
                             "--bootstrap", "20", "--min-each", "5", "--loso-draws", "2"])
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["splits"].keys() == metrics["splits"].keys() == {"random", "cross_domain", "loso"}
    for src, res in saved["splits"]["loso"].items():   # trained without `src`, tested on it
        assert res["sidecar"]["n"] == sum(r["source"] == src for r in rows[:1500])
        assert res["sidecar"]["draws"] == 2 and 0.0 <= res["sidecar"]["auroc_sd"] < 0.5
    for split in ("random", "cross_domain"):
        methods = saved["splits"][split]["methods"]
        assert {"sidecar", "hidden_lr", "text_tfidf", "category_rate", "neg_entropy", "globals_lr"} <= methods.keys()
        for m in methods.values():
            assert 0.0 <= m["auroc"] <= 1.0 and 0.0 <= m["ece"] <= 1.0 and m["n"] > 0
    # The shipped sidecar (trained on the random split's train part) is better than chance on its test part.
    assert saved["splits"]["random"]["methods"]["sidecar"]["auroc"] > 0.6
    assert 0.0 <= saved["bands"]["low"] <= saved["bands"]["high"] <= 1.0
    assert all((tmp_path / f).stat().st_size > 1000 for f in saved["figures"])
    assert "| sidecar |" in (tmp_path / "metrics.md").read_text()
    assert json.loads((tmp_path / "bands.json").read_text())["yaml_recommended"].startswith("policy:")
    assert not math.isnan(saved["splits"]["random"]["methods"]["hidden_lr"]["auroc"])


@pytest.mark.skipif(not (SHIPPED / "features.npz").exists(), reason="shipped features not present")
def test_applicability_held_out_sources(tmp_path):
    result = evaluate_applicability.main(["--out", str(tmp_path), "--limit", "1500", "--draws", "2"])
    head = result["methods"]["applicability"]
    saved = json.loads((tmp_path / "applicability.json").read_text())
    assert saved["methods"]["applicability"]["passed"] == head["passed"]
    assert head["n_chat"] > 0 and head["n_factual"] > 0 and head["kinds"] >= 5 and head["passed_sd"] >= 0.0
    # Each source was scored by a head that never saw it, and still separates the kinds of turns.
    assert head["auroc"] > 0.9 and head["passed"] > 0.8 and head["gated"] > 0.8
    # Knowledge questions are also reported by how they were asked (plainly, or as a variant of their source's).
    variants = head["by_variant"]
    assert "plain" in variants and sum(v["n"] for v in variants.values()) == head["n_factual"]
    assert "| **all, applicability** |" in (tmp_path / "applicability.md").read_text()
    # The shares are also split by the contrasts where errors concentrate (statements before a question; the
    # short-answer instruction, which only knowledge questions carry), and each split's parts add up to the whole.
    for split in (head["split"], head["instruction"]):
        assert sum(part["n_chat"] for part in split.values()) == head["n_chat"]
        assert sum(part["n_factual"] for part in split.values()) == head["n_factual"]
    assert head["instruction"]["with_instruction"]["n_chat"] == 0 < head["instruction"]["with_instruction"]["n_factual"]
    assert "Turns that end with the short-answer instruction" in (tmp_path / "applicability.md").read_text()
    # The cascade's early exits are counted against the full read they stand in for, draw by draw.
    exits = saved["early_exit"]
    assert len(exits["changed"]) == 2 and exits["turns"] == 1500 and max(exits["changed"]) < 1500 * 0.05


@pytest.mark.skipif(not (SHIPPED / "features.npz").exists(), reason="shipped features not present")
def test_sources_cut_from_one_corpus_are_held_out_together(monkeypatch):
    """SQuAD's passage turns and its conversations about them are scored by heads that read neither."""
    import numpy as np
    from training.store import is_factual, load_dataset
    rows, feats, meta = load_dataset(SHIPPED)
    keep = [i for s in ("red", "cbtrivia", "chatterbot", "squad", "squadtalk", "gsm8k")
            for i in [j for j, r in enumerate(rows) if r["source"] == s][:60]]
    rows, feats = [rows[i] for i in keep], feats[keep]
    trained_on = []
    fit = evaluate_applicability.Applicability.fit
    monkeypatch.setattr(evaluate_applicability.Applicability, "fit",
                        lambda self, *a, groups, **k: trained_on.append(set(groups)) or fit(self, *a, groups=groups, **k))
    y = np.array([int(is_factual(r)) for r in rows])
    evaluate_applicability.held_out_predictions(rows, feats, y, meta["signature"], C=(1e-2,), ablate=False)
    assert len(trained_on) == 5 and sum(not {"squad", "squadtalk"} & t for t in trained_on) == 1
    assert all({"squad", "squadtalk"} <= t for t in trained_on if "squad" in t or "squadtalk" in t)


def test_leave_one_source_out_averages_its_draws():
    blocks = [{"n": 10, "auroc": a, "auprc": 0.5, "ece": e, "brier": 0.1, "mean_p": 0.2, "auroc_ci95": (a - 0.1, a + 0.1)}
              for a, e in ((0.7, 0.02), (0.8, 0.06))]
    out = evaluate._over_draws(blocks)
    assert math.isclose(out["auroc"], 0.75) and math.isclose(out["auroc_sd"], 0.05) and math.isclose(out["ece"], 0.04)
    assert out["auroc_ci95"] == pytest.approx([0.65, 0.85]) and out["draws"] == 2 and out["n"] == 10


def test_the_sidecars_evaluate_trains_read_what_ships():
    """Cross-validation, leave-one-source-out and the cross-domain split retrain the sidecar: with the shipped
    checkpoint's reads (Qwen's `hidden + layers`), not the class default, or their columns describe another head."""
    from gate.sidecar import Sidecar
    shipped = Sidecar(reads=("hidden", "layers"))
    assert evaluate.sidecar_hyperparams(shipped, fast=False) == {"reads": ("hidden", "layers")}
    side = evaluate.methods({}, evaluate.sidecar_hyperparams(shipped, fast=True))[0]
    assert side.name == "sidecar" and side.sidecar.hp["reads"] == ("hidden", "layers") and side.sidecar.hp["seeds"] == 1
    assert evaluate.sidecar_hyperparams(None, fast=False) == {}

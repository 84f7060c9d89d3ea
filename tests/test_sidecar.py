"""Sidecar: learns a separable synthetic problem, round-trips through a checkpoint, refuses other models."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from gate.engine.features import Features
from gate.sidecar import Sidecar, SidecarMismatch, load_for, model_signature, sidecar_dir

L, F, G, H, D = 6, 4, 3, 2, 8
SIG = {"model_id": "toy/model-a", "num_layers": L, "hidden_size": D, "vocab_size": 100,
       "layer_features": [f"f{i}" for i in range(F)], "global_features": [f"g{i}" for i in range(G)],
       "hidden_depths": [0.5, 1.0], "message_depths": [0.6], "positions": 4, "recall_band": [0.35, 0.75]}


def synthetic(n: int, seed: int) -> tuple[Features, np.ndarray]:
    """Labels come from a mid-depth feature, one global, a hidden and a message direction, plus noise."""
    rng = np.random.default_rng(seed)
    layer = rng.normal(size=(n, L, F))
    glob = rng.normal(size=(n, G))
    hidden = rng.normal(size=(n, H, D))
    message = rng.normal(size=(n, 1, D))
    score = 2 * layer[:, 2:4, 0].mean(1) + glob[:, 1] + hidden[:, 0, 3] + 0.5 * message[:, 0, 5] + 0.1 * rng.normal(size=n)
    y = (score > np.quantile(score, 0.75)).astype(int)  # imbalanced, like real labels
    feats = Features(layer.astype(np.float16), glob.astype(np.float16), hidden.astype(np.float16),
                     np.zeros((n, L), dtype=np.int64), message.astype(np.float16))
    return feats, y


@pytest.fixture(scope="module")
def fitted() -> tuple[Sidecar, Features, np.ndarray]:
    tr, ytr = synthetic(500, 0)
    va, yva = synthetic(200, 1)
    te, yte = synthetic(300, 2)
    # both linear reads: the synthetic label depends on the trajectory, the globals and the residual
    sc = Sidecar(signature=SIG, reads=("hidden", "layers"), seeds=1, epochs=30).fit(tr, ytr, va, yva)
    return sc, te, yte


def test_learns_separable_problem(fitted):
    sc, te, yte = fitted
    p = sc.predict_proba(te)
    assert p.shape == (len(yte),) and np.all((p >= 0) & (p <= 1))
    assert roc_auc_score(yte, p) > 0.9
    assert abs(p.mean() - yte.mean()) < 0.1  # calibrated to the base rate, not the balanced 0.5


def test_checkpoint_round_trip(fitted, tmp_path):
    sc, te, _ = fitted
    sc.save(tmp_path)
    again = Sidecar.load(tmp_path, signature=dict(SIG))
    np.testing.assert_allclose(again.predict_proba(te), sc.predict_proba(te), rtol=1e-5, atol=1e-6)
    assert again.signature == SIG


@pytest.mark.parametrize("reads", [("layers",), ("hidden", "layers", "gru")])
def test_other_reads_learn_and_round_trip(reads, tmp_path):
    (tr, ytr), (va, yva), (te, yte) = synthetic(500, 0), synthetic(200, 1), synthetic(300, 2)
    sc = Sidecar(signature=SIG, reads=reads, seeds=1, epochs=20).fit(tr, ytr, va, yva)
    assert roc_auc_score(yte, sc.predict_proba(te)) > 0.85 and bool(sc.nets) == ("gru" in reads)
    sc.save(tmp_path)
    np.testing.assert_allclose(Sidecar.load(tmp_path, dict(SIG)).predict_proba(te), sc.predict_proba(te), rtol=1e-5)
    with pytest.raises(ValueError, match="reads"):
        Sidecar(reads=("nope",))


def test_loading_for_another_model_is_refused(fitted, tmp_path):
    sc, _, _ = fitted
    sc.save(tmp_path)
    other = {**SIG, "model_id": "toy/model-b", "num_layers": 12}
    with pytest.raises(SidecarMismatch, match="toy/model-a.*toy/model-b"):
        Sidecar.load(tmp_path, signature=other)


def test_features_of_wrong_shape_are_refused(fitted):
    sc, te, _ = fitted
    wrong = Features(te.layer[:, :3], te.globals, te.hidden, te.top_tokens[:, :3], te.message)
    with pytest.raises(SidecarMismatch):
        sc.predict_proba(wrong)


def test_load_for_engine(engine, settings, tmp_path, monkeypatch, fitted):
    """No checkpoint -> None; a checkpoint saved for another model under this model's folder -> refused."""
    monkeypatch.setattr(engine.settings, "sidecar_dir", str(tmp_path))
    assert sidecar_dir(engine.settings, engine.loaded.model_id).parent == tmp_path
    assert load_for(engine) is None
    fitted[0].save(sidecar_dir(engine.settings, engine.loaded.model_id))
    with pytest.raises(SidecarMismatch, match="toy/model-a"):
        load_for(engine)
    assert model_signature(engine)["num_layers"] == engine.arch.num_layers


def test_shipped_checkpoint_serves_the_default_model(engine):
    """The committed checkpoint matches the engine's signature and scores a real probe."""
    sc = load_for(engine)
    if sc is None:
        pytest.skip("no shipped checkpoint")
    probe = engine.probe_chats([[{"role": "user", "content": q}]
                                for q in ("What is the capital of France?", "Who won the 1987 Tasmanian chess open?")])
    p = sc.predict_proba(probe.features)
    assert p.shape == (2,) and np.all((p > 0) & (p < 1))
    assert p[0] > p[1]  # a capital the model knows vs an obscure fact


def test_dtype_mismatch_warns_but_loads(fitted, tmp_path, caplog):
    """Features in another dtype move P(knows) only a little (bench/bench_dtype.py): a warning, not a refusal.
    A checkpoint that predates the dtype record counts as float32."""
    sc, te, _ = fitted
    sc.save(tmp_path)  # SIG records no dtype
    with caplog.at_level("WARNING", logger="gate.sidecar"):
        assert Sidecar.load(tmp_path, signature={**SIG, "dtype": "float32"}) is not None
        assert not caplog.records
        again = Sidecar.load(tmp_path, signature={**SIG, "dtype": "bfloat16"})
    assert "float32 features" in caplog.text and "bfloat16" in caplog.text
    np.testing.assert_allclose(again.predict_proba(te), sc.predict_proba(te), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", ["smollm2-135m-instruct", "qwen2.5-coder-1.5b-instruct"])
def test_shipped_checkpoint_reproduces_its_reported_test_auroc(model):
    """Each shipped sidecar, read back with its dataset's signature, scores the random split's test part exactly
    as metrics.json reports (no model needed); the other model's signature is refused by name."""
    import json

    from sklearn.metrics import roc_auc_score

    from gate.sidecar import ROOT, SidecarMismatch
    from training.splits import load_splits
    from training.store import data_dir, dataset_index, load_dataset_features, load_rows, teaches_knows

    directory = data_dir(model)
    feats, ids, meta = load_dataset_features(directory)
    rows = load_rows(directory / "examples.jsonl")
    assert ids == [r["id"] for r in rows]
    knowledge = np.flatnonzero([teaches_knows(r) for r in rows])
    rows = [rows[i] for i in knowledge]
    test = load_splits(directory / "splits.json", rows)["random"]["test"]
    sc = Sidecar.load(ROOT / "ckpts" / model, meta["signature"])
    p = sc.predict_proba(feats[knowledge][test])
    reported = json.loads((directory / "metrics.json").read_text())["splits"]["random"]["methods"]["sidecar"]
    assert len(test) == reported["n"]
    assert roc_auc_score([rows[i]["label"] for i in test], p) == pytest.approx(reported["auroc"], abs=1e-6)
    other = next(m for m in ("smollm2-135m-instruct", "qwen2.5-coder-1.5b-instruct") if m != model)
    other_sig = dataset_index(data_dir(other))[1]["signature"]
    with pytest.raises(SidecarMismatch, match=other):
        Sidecar.load(ROOT / "ckpts" / model, other_sig)


def test_regularisation_is_chosen_by_transfer_to_a_left_out_source(monkeypatch):
    """With each training row's source, C is the grid value that reads a left-out source best; without sources
    (or with fewer than two that have enough known answers) the validation part decides."""
    import gate.sidecar as sidecar_module
    (tr, ytr), (va, yva) = synthetic(600, 0), synthetic(200, 1)
    groups = np.array(["a", "b", "c"])[np.arange(600) % 3]
    grid = Sidecar.defaults["hidden_C"]
    scores = sidecar_module._transfer_aurocs(tr.hidden.reshape(600, -1).astype(np.float32), ytr, groups, grid, 10)
    # the residual carries part of the label: every C reads a left-out source better than chance
    assert scores.shape == (len(grid),) and np.all((scores > 0.6) & (scores <= 1.0))
    assert sidecar_module._transfer_aurocs(tr.hidden.reshape(600, -1), ytr, np.where(groups == "a", "a", "z"),
                                           grid, 10**6) is None
    assert sidecar_module._transfer_aurocs(tr.hidden.reshape(600, -1), ytr, None, grid, 10) is None

    norms = {}
    for favoured in (0, len(grid) - 1):
        monkeypatch.setattr(sidecar_module, "_transfer_aurocs", lambda *a, f=favoured: np.eye(len(grid))[f])
        sc = Sidecar(signature=SIG).fit(tr, ytr, va, yva, groups=groups)
        norms[favoured] = np.linalg.norm(sc.state["hidden_coef"])
    assert norms[0] < norms[len(grid) - 1]           # the weakest C the transfer favoured, then the strongest

"""training.select_reads on a small cut of the shipped Qwen features: every candidate scored, side by side."""
import json

import numpy as np

from training import select_reads, store


def test_every_candidate_is_scored_on_each_held_out_source(tmp_path):
    """--jobs 2 scores the candidates in two processes and still writes one row per candidate, each with a
    held-out AUROC per source that has enough known answers (three sources cut from the shipped dataset)."""
    from gate.engine.loading import model_slug
    from gate.sidecar import data_dir
    shipped = data_dir(model_slug("qwen2.5-coder-1.5b-instruct"))
    rows = store.load_rows(shipped / "examples.jsonl")
    feats, ids, meta = store.load_dataset_features(shipped)
    rng = np.random.default_rng(0)
    keep = np.sort(np.concatenate([rng.choice(np.flatnonzero([r["source"] == s and store.teaches_knows(r) for r in rows]),
                                              120, replace=False) for s in ("red", "triviaqa", "naturalqs")]))
    store.save_rows(tmp_path / "examples.jsonl", [rows[i] for i in keep])
    store.save_dataset_features(tmp_path, feats[keep], [ids[i] for i in keep], meta)
    result = select_reads.main(["--data", str(tmp_path), "--jobs", "2", "--draws", "1", "--min-positives", "10"])
    assert set(result) == {"+".join(r) for r in select_reads.CANDIDATES}  # Qwen has no message read
    for scores in result.values():
        assert set(scores["by_source"]) == {"red", "triviaqa", "naturalqs"}
        assert all(0 <= v["auroc"] <= 1 and v["n"] == 120 for v in scores["by_source"].values())
    assert json.loads((tmp_path / "selection.json").read_text()) == result
    assert len((tmp_path / "selection.md").read_text().splitlines()) == 2 + len(result)

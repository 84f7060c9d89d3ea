"""Dataset build on the real model: rows and features aligned, and a build killed between chunks resumes
without recomputing what was saved."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from training import build_dataset as bd
from gate.normalize import answer_region, matches, normalize
from training.chat_sources import context
from training.sources import Example, red_trivia
from training.store import load_dataset, load_rows

EXAMPLES = red_trivia(("worldcapitals",))[:4]  # real rows: shipped files get their text back from the package
ARGS = dict(chunk_size=2, batch_size=2, max_new_tokens=4)


@pytest.fixture(autouse=True)
def one_thread():
    """On the shared 2-core CI box two spinning torch threads made these tiny batches ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Killed(Exception):
    pass


def counting(monkeypatch, kill_at: int | None = None) -> list[int]:
    """Patch run_chunk to count calls, and to die on call number `kill_at` (a kill between chunks)."""
    calls: list[int] = []
    real = bd.run_chunk

    def run(engine, examples, *a):
        calls.append(len(examples))
        if kill_at is not None and len(calls) == kill_at:
            raise Killed
        return real(engine, examples, *a)
    monkeypatch.setattr(bd, "run_chunk", run)
    return calls


def test_resume_after_kill(engine, tmp_path, monkeypatch):
    calls = counting(monkeypatch, kill_at=2)
    with pytest.raises(Killed):
        bd.build(engine, EXAMPLES, tmp_path, **ARGS)
    assert (tmp_path / "build" / "chunk_0000.npz").exists()
    assert not (tmp_path / "build" / "chunk_0001.npz").exists() and not (tmp_path / "examples.jsonl").exists()
    first_mtime = (tmp_path / "build" / "chunk_0000.npz").stat().st_mtime_ns

    calls = counting(monkeypatch)
    stats = bd.build(engine, EXAMPLES, tmp_path, **ARGS)
    assert calls == [2] and stats["computed"] == 2 and stats["examples"] == 4   # only the missing chunk
    assert (tmp_path / "build" / "chunk_0000.npz").stat().st_mtime_ns == first_mtime

    for part in (tmp_path / "examples.jsonl", *sorted((tmp_path / "build").glob("chunk_*.jsonl"))):
        assert not any("question" in r or "golds" in r for r in load_rows(part)), part  # chunks are committable
    rows, feats, meta = load_dataset(tmp_path)
    assert [r["id"] for r in rows] == [e.id for e in EXAMPLES]
    assert feats.layer.shape[:2] == (4, engine.arch.num_layers) and feats.layer.dtype == np.float16
    assert feats.hidden.shape == (4, len(engine.settings.features.hidden_depths), engine.arch.hidden_size)
    assert all(r["label"] == int(matches(r["prediction"], r["golds"])) for r in rows)
    assert meta["signature"]["model_id"] == engine.loaded.model_id and meta["max_new_tokens"] == 4

    # A chunk whose npz never landed (killed mid-save) is rebuilt from the merged dataset's rows: no compute.
    (tmp_path / "build" / "chunk_0001.npz").unlink()
    calls = counting(monkeypatch)
    bd.build(engine, EXAMPLES, tmp_path, **ARGS)
    assert calls == [] and (tmp_path / "build" / "chunk_0001.npz").exists()
    # Different settings never mix with saved chunks.
    with pytest.raises(SystemExit, match="max_new_tokens"):
        bd.build(engine, EXAMPLES, tmp_path, **{**ARGS, "max_new_tokens": 5})

    # A build finished on another machine merges without the model; a row whose turn changed since is refused.
    rows, feats, _ = load_dataset(tmp_path)
    (tmp_path / "examples.jsonl").unlink()
    (tmp_path / "features.npz").unlink()
    assert [r["id"] for r in bd.merge_built(tmp_path)] == [e.id for e in EXAMPLES]
    again, feats_again, _ = load_dataset(tmp_path)
    assert again == rows and np.array_equal(feats_again.hidden, feats.hidden)
    chunk = tmp_path / "build" / "chunk_0001.jsonl"
    chunk.write_text(chunk.read_text().replace(rows[2]["prompt"], "0" * 16))
    with pytest.raises(SystemExit, match="chunk 1 was built with other settings .*, or holds turns that have changed since"):
        bd.merge_built(tmp_path)


def test_short_instruction_on_half():
    ids = [f"red-{i:04d}" for i in range(400)]
    share = np.mean([bd.wants_short(i) for i in ids])
    assert 0.4 < share < 0.6
    ex = Example("x", "red", "general", "Who wrote Hamlet?", ["Shakespeare"])
    assert bd.user_text(ex) in (ex.question, f"{ex.question} {bd.SHORT_INSTRUCTION}")


def test_added_sources_compute_only_new_turns_and_chat_turns_are_only_probed(engine, tmp_path, monkeypatch):
    bd.build(engine, EXAMPLES[:2], tmp_path, **ARGS)
    chat = context()[:2]   # questions answered by the conversation itself: not knowledge questions
    calls = counting(monkeypatch)
    stats = bd.build(engine, chat + EXAMPLES[:2], tmp_path, **ARGS)
    assert calls == [2] and stats["computed"] == 2          # the knowledge questions are reused by id
    rows, feats, _ = load_dataset(tmp_path)
    by = {r["id"]: r for r in rows}
    for ex in chat:
        row = by[ex.id]
        assert row["factual"] is False and row["label"] is None and row["prediction"] == ""
        assert row["question"] == ex.question and row["history"] == ex.history   # text read back by id
    assert all(by[ex.id]["factual"] for ex in EXAMPLES[:2]) and np.isfinite(feats.hidden.astype(float)).all()


def test_a_new_feature_layout_reprobes_and_keeps_the_answers(engine, tmp_path, monkeypatch):
    """Rows built with another feature layout (here: without the message read) keep their answers: the
    rebuild probes every turn again and generates nothing, and the build folder is taken over."""
    before = engine.features
    engine.features = before.model_copy(update={"message_depths": ()})
    try:
        bd.build(engine, EXAMPLES[:2], tmp_path, **ARGS)
    finally:
        engine.features = before
    old = {r["id"]: r for r in load_rows(tmp_path / "examples.jsonl")}
    monkeypatch.setattr("gate.engine.generate.generate_batch", lambda *a, **k: pytest.fail("answered again"))
    stats = bd.build(engine, EXAMPLES[:2], tmp_path, **ARGS)
    rows, feats, meta = load_dataset(tmp_path)
    assert stats["computed"] == 2 and meta["signature"]["message_depths"] == list(before.message_depths)
    assert feats.message.shape == (2, len(before.message_depths), engine.arch.hidden_size)
    assert all(r["prediction"] == old[r["id"]]["prediction"] and r["label"] == old[r["id"]]["label"] for r in rows)
    with pytest.raises(SystemExit, match="max_new_tokens"):   # an answer-changing setting still refuses the folder
        bd.build(engine, EXAMPLES[:2], tmp_path, **{**ARGS, "max_new_tokens": 5})


def test_each_turn_is_probed_once_and_counted_once(engine, monkeypatch):
    """Knowledge questions are probed (and answered) in their own batches, the rest only probed: no turn twice,
    and the progress bar's count is the number of turns."""
    probed: list[int] = []
    real = engine.probe
    monkeypatch.setattr(engine, "probe", lambda texts, spans=None: probed.append(len(texts)) or real(texts, spans))
    progress: list[int] = []
    rows, _ = bd.run_chunk(engine, EXAMPLES[:2] + context()[:1], 2, 4, progress.append)
    assert sum(probed) == 3 and sum(progress) == 3 and [r["factual"] for r in rows] == [True, True, False]


def test_a_changed_conversation_is_recomputed_and_labels_follow_the_matcher(engine, tmp_path, monkeypatch):
    """Rows are reused by id only for the same messages (a changed template must not keep stale features), and
    labels are recomputed from the stored answers at every merge (a matcher fix needs no generation)."""
    from dataclasses import replace
    bd.build(engine, EXAMPLES[:2], tmp_path, **ARGS)
    first = load_rows(tmp_path / "examples.jsonl")
    assert all(r["prompt"] == bd.fingerprint(ex) for r, ex in zip(first, EXAMPLES))

    calls = counting(monkeypatch)
    reworded = [replace(EXAMPLES[0], question=EXAMPLES[0].question + " Please."), EXAMPLES[1]]
    bd.build(engine, reworded, tmp_path, **ARGS)
    assert calls == [1]                                        # only the reworded turn, in its chunk

    calls = counting(monkeypatch)
    own = answer_region(first[1]["prediction"])
    assert normalize(own)                                      # its own answer, as the gold, must match
    for golds, label in (([own], 1), (["Zzyzx Qwv"], 0)):   # relabelled each way, nothing generated
        bd.build(engine, [reworded[0], replace(reworded[1], golds=golds)], tmp_path, **ARGS)
        assert load_rows(tmp_path / "examples.jsonl")[1]["label"] == label
    assert calls == []


def test_merged_features_are_cut_into_files_a_git_host_takes(tmp_path, monkeypatch):
    """More than shard_rows rows go to features.npz, features-1.npz, …, read back whole and in order; a shorter
    rewrite removes the files it no longer needs, and files from two builds are refused, not mixed."""
    from gate.engine.features import Features
    from training import store
    rng = np.random.default_rng(0)
    feats = Features(rng.random((5, 3, 2)).astype(np.float16), rng.random((5, 4)).astype(np.float16),
                     rng.random((5, 2, 6)).astype(np.float16), rng.integers(0, 9, (5, 3)), rng.random((5, 1, 6)).astype(np.float16))
    ids, meta = [f"red-{i}" for i in range(5)], {"model": "m"}
    monkeypatch.setattr(store, "SHARD_BYTES", 2 * 80)  # two rows of 80 bytes of arrays
    store.save_dataset_features(tmp_path, feats, ids, meta)
    assert [p.name for p in store.feature_files(tmp_path)] == ["features.npz", "features-1.npz", "features-2.npz"]
    back, back_ids, back_meta = store.load_dataset_features(tmp_path)
    assert back_ids == ids and back_meta == meta and np.array_equal(back.hidden, feats.hidden)
    assert store.dataset_index(tmp_path) == (ids, meta)
    store.save_features(tmp_path / "features-1.npz", feats[2:4], ids[2:4], {"model": "other"})  # a killed rewrite
    assert store.dataset_index(tmp_path) == (ids, None)
    with pytest.raises(ValueError, match="different builds"):
        store.load_dataset_features(tmp_path)
    store.save_dataset_features(tmp_path, feats[:3], ids[:3], meta)
    assert [p.name for p in store.feature_files(tmp_path)] == ["features.npz", "features-1.npz"]
    assert not (tmp_path / "features-2.npz").exists() and store.load_dataset_features(tmp_path)[1] == ids[:3]


@pytest.mark.parametrize("layers, width, message, rows", [(30, 576, 1, 8192), (28, 1536, 0, 5120)])
def test_features_files_are_cut_by_size(layers, width, message, rows):
    """Files hold ~SHARD_BYTES of arrays whatever the model's width: SmolLM2-135M's 8,192 rows (the files already
    tracked) and Qwen 1.5B's 5,120 (8,192 of its rows made a 43 MB file, near a git host's 50 MB warning)."""
    from gate.engine.features import Features
    from training import store
    one = Features(np.zeros((1, layers, 11), np.float16), np.zeros((1, 14), np.float16),
                   np.zeros((1, 2, width), np.float16), np.zeros((1, layers), np.int64),
                   np.zeros((1, message, width), np.float16))
    assert store.shard_rows(one) == rows
    assert rows * sum(getattr(one, k).nbytes for k in store._ARRAYS) <= store.SHARD_BYTES

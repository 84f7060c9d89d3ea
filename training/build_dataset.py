"""Self-labelled dataset: one batched prompt forward per batch gives the features AND the prefill of the
model's own greedy answer; the label is 1 iff that answer contains a normalised gold or alias.

Knowledge questions (`factual`) are answered and labelled; chat turns that are not knowledge questions
(training/chat_sources.py) are only probed: their features teach the applicability head, and they have no label.

Resumable: examples are processed in fixed chunks, each saved atomically under data/<slug>/build/; a
restart skips finished chunks, so a build killed at any point loses at most the chunk in flight. Rows already
in the folder's merged dataset (same model and settings) are reused by id — only while the conversation they
were computed for is unchanged (each row keeps a fingerprint of its messages) — so adding sources computes only
the new examples. Labels are recomputed at every merge from the stored answers, so a fix to the answer matcher
needs no new generation.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from gate.config import Settings, load_settings
from gate.engine.loading import model_slug
from gate.normalize import matches
from training.chat_sources import CHAT_LOADERS
from training.sources import SOURCES, Example, by_id, load_examples
from training.store import (concat, data_dir, dataset_index, features_index, load_dataset_features, load_features,
                            load_rows, save_dataset_features, save_examples, save_features, teaches_knows)
from training.variants import VARIANTS

SHORT_INSTRUCTION = "Answer in a few words."
# The shipped default dataset. Order matters for reuse: each sample is drawn from one seeded generator in turn.
KNOWLEDGE_SOURCES = ("red,simpleqa:600,fanoutqa:300,freshqa,cbtrivia,red~conv:120,red~chat:60,red~prev:60,red~and:60,"
                     "simpleqa~conv:40,redfandom:1500")
CHAT_SOURCES = ("chatterbot,persistbench:120,writingbench:60,humaneval:100,codeio:100,gsm:100,arithmetic:60,"
                "transform:80,reading:60,context:80,instructions,followup:60,rgmaths,rgtext,rgpuzzle,"
                "alice:300,agentdojo,tau2,ifeval:150,arenahard:150,mtbench,squad:150,gsm8k:100,tooltalk:150,drop:150,coqa:150")
# Added after those (both kinds): last, so every earlier source's seeded sample stays the same.
LATER_SOURCES = ("naturalqs,jeopardy:600,boolq:150,skills,red~about:150,fanoutqa~about:150,squadtalk:150,droptalk:150,"
                 "red~aside:300,cbtrivia~aside:100,simpleqa~aside:60,naturalqs~aside:100,stated,squadfact:150,sciq:150,sciqa:600,"
                 "sciqa~lead:300,coqafact:150,squadlead:300,alicewhat:300,fanouttopic:200,simpleqa~then:150,red~then:150,squadwork:150,sciqwork:150,commonknow,triviaqa,nqopen")
DEFAULT_SOURCES = f"{KNOWLEDGE_SOURCES},{CHAT_SOURCES},{LATER_SOURCES}"


def wants_short(example_id: str) -> bool:
    """Half the prompts (fixed by id hash) carry a short-answer instruction: chat clients send both kinds."""
    return hashlib.sha1(example_id.encode()).digest()[0] % 2 == 0


def user_text(ex: Example) -> str:
    """The latest user message as the dataset asks it (a non-knowledge turn is asked as it is)."""
    return f"{ex.question} {SHORT_INSTRUCTION}" if ex.factual and wants_short(ex.id) else ex.question


def messages_of(ex: Example) -> list[dict]:
    return ex.messages(user_text(ex))


def fingerprint(ex: Example) -> str:
    """What a row's features and answer were computed from: the messages as asked. A changed template or source
    text gives another fingerprint, so the row is recomputed instead of reused by its id."""
    return hashlib.sha1(json.dumps(messages_of(ex), sort_keys=True).encode()).hexdigest()[:16]


def same_turn(row: dict, ex: Example) -> bool:
    """The row was computed for this example's conversation (rows from before fingerprints are trusted)."""
    return row.get("prompt") in (None, fingerprint(ex))


def labelled(row: dict, ex: Example) -> dict:
    """The row with its label (knowledge questions only) and fingerprint from the current matcher and example."""
    return {**row, "prompt": fingerprint(ex),
            "label": int(matches(row["prediction"], ex.golds)) if ex.factual else None}


def dataset_meta(engine, max_new_tokens: int) -> dict:
    """What the features were computed with; a sidecar trained on them must match the serving engine."""
    from gate.sidecar import model_signature
    return {"signature": model_signature(engine), "max_new_tokens": max_new_tokens,
            "short_instruction": SHORT_INSTRUCTION}


def run_chunk(engine, examples: list[Example], batch_size: int, max_new_tokens: int,
              progress: Callable[[int], object] = lambda n: None,
              answered: dict[str, dict] | None = None) -> tuple[list[dict], object]:
    """Features and rows for one chunk, batched by prompt length to limit left padding. Only knowledge
    questions are answered (greedy) and labelled — unless `answered` holds the same model's answer to the same
    prompt from an earlier build (another feature layout): then it is only probed. `progress(n)` after each batch."""
    from gate.engine.generate import SamplingParams, generate_batch
    answered = answered or {}
    messages = [messages_of(ex) for ex in examples]
    prompts = [engine.prompt(m) for m in messages]
    preds: dict[int, str] = {i: answered[ex.id]["prediction"] for i, ex in enumerate(examples)
                             if ex.id in answered and same_turn(answered[ex.id], ex)}
    feats: dict[int, object] = {}
    to_answer = {i for i, ex in enumerate(examples) if ex.factual and i not in preds}  # fixed before any is answered
    for answer in (True, False):
        order = sorted((i for i in range(len(examples)) if (i in to_answer) == answer), key=lambda i: len(prompts[i]))
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            probe = engine.probe([prompts[i] for i in idx], [engine.span(prompts[i], messages[i]) for i in idx])
            answers = (generate_batch(engine.model, engine.tokenizer, probe.capture,
                                      SamplingParams(max_tokens=max_new_tokens), engine.eos_ids)
                       if answer else [preds.get(i, "") for i in idx])
            for j, i in enumerate(idx):
                preds[i], feats[i] = answers[j], probe.features[j:j + 1]
            del probe
            progress(len(idx))
    rows = [labelled({**ex.to_dict(), "short": ex.factual and wants_short(ex.id), "prediction": preds[i]}, ex)
            for i, ex in enumerate(examples)]
    return rows, concat([feats[i] for i in range(len(examples))])


def answers_key(meta: dict) -> tuple:
    """What an answer depends on (the model, its dtype, the budget and the prompt's instruction), not the
    feature layout: rows that agree on it keep their answers when only the features are recomputed."""
    from gate.sidecar import recorded_dtype
    sig = meta.get("signature", {})
    return sig.get("model_id"), recorded_dtype(sig), meta.get("max_new_tokens"), meta.get("short_instruction")


def previous_rows(folders: list[Path], meta: dict) -> tuple[dict[str, tuple[dict, object]], dict[str, dict]]:
    """Every row already computed with the same model and settings, by id: each folder's merged dataset and
    saved chunks (so a build with other sources or chunking recomputes nothing it has); and, by id, the rows
    whose answers still hold (same answers_key) though their features were computed with another layout."""
    known: dict[str, tuple[dict, object]] = {}
    answered: dict[str, dict] = {}
    stored = []  # (rows file, first features file, reader of all its features)
    for folder in folders:
        stored.append((folder / "examples.jsonl", folder / "features.npz", partial(load_dataset_features, folder)))
        stored += [(j, j.with_suffix(".npz"), partial(load_features, j.with_suffix(".npz")))
                   for j in sorted((folder / "build").glob("chunk_*.jsonl"))]
    for jsonl, npz, read in stored:
        if not (jsonl.exists() and npz.exists()):
            continue
        feats, ids, old_meta = read()
        rows = load_rows(jsonl)
        if ids != [r["id"] for r in rows]:
            continue
        if old_meta == meta:
            known.update({r["id"]: ({"factual": True, **r}, feats[k:k + 1]) for k, r in enumerate(rows)})
        elif answers_key(old_meta) == answers_key(meta):
            answered.update({r["id"]: r for r in rows if r.get("factual", True)})
    return known, answered


def reuse_or_run(engine, chunk: list[Example], known: dict, batch_size: int, max_new_tokens: int,
                 progress: Callable[[int], object] = lambda n: None, answered: dict[str, dict] | None = None):
    """A chunk's rows and features: reused where the id is known for the same conversation, computed for the
    rest (probed only where `answered` has the answer). Reused rows keep their old labels here: the merge relabels."""
    todo = [ex for ex in chunk if ex.id not in known or not same_turn(known[ex.id][0], ex)]
    progress(len(chunk) - len(todo))
    fresh: dict[str, tuple[dict, object]] = {}
    if todo:
        rows, feats = run_chunk(engine, todo, batch_size, max_new_tokens, progress, answered)
        fresh = {r["id"]: (r, feats[k:k + 1]) for k, r in enumerate(rows)}
    got = [fresh.get(ex.id) or known[ex.id] for ex in chunk]
    return [r for r, _ in got], concat([f for _, f in got]), len(todo)


def check_manifest(build_dir: Path, manifest: dict) -> None:
    """Finished chunks are reused only if they were built with the same model and settings. A folder whose
    chunks differ only in the feature layout is taken over: its chunks are re-probed, their answers kept."""
    path = build_dir / "manifest.json"
    old = json.loads(path.read_text()) if path.exists() else None
    if old is not None and old != manifest and answers_key(old) != answers_key(manifest):
        bad = ", ".join(k for k, v in manifest.items() if old.get(k) != v)
        raise SystemExit(f"{build_dir} holds chunks built with different settings ({bad}); "
                         f"rerun with the same options or delete that folder")
    path.write_text(json.dumps(manifest, indent=1))


def finished(build_dir: Path, k: int, chunk: list[Example], meta: dict) -> bool:
    """A chunk is done when both files exist and hold exactly the expected examples' conversations, computed with
    these settings (a changed --limit, seed or template changes the chunk, which is then recomputed)."""
    jsonl, npz = chunk_paths(build_dir, k)
    if not (jsonl.exists() and holds(npz, [e.id for e in chunk], meta)):
        return False
    rows = load_rows(jsonl)
    return [r["id"] for r in rows] == [e.id for e in chunk] and all(map(same_turn, rows, chunk))


def holds(npz: Path, ids: list[str], meta: dict) -> bool:
    """The features file exists and holds these rows, computed with these settings."""
    return npz.exists() and features_index(npz) == (ids, meta)


def chunk_paths(build: Path, k: int) -> tuple[Path, Path]:
    return build / f"chunk_{k:04d}.jsonl", build / f"chunk_{k:04d}.npz"


def build(engine, examples: list[Example], out: Path, chunk_size: int, batch_size: int, max_new_tokens: int,
          reuse: tuple[Path, ...] = ()) -> dict:
    """Process unfinished chunks, then merge all into examples.jsonl + features files. Rows already computed in
    `out` or the `reuse` folders (same settings) are taken by id. Returns throughput stats."""
    build_dir = out / "build"
    build_dir.mkdir(parents=True, exist_ok=True)
    meta = dataset_meta(engine, max_new_tokens)
    check_manifest(build_dir, meta)
    chunks = [examples[s:s + chunk_size] for s in range(0, len(examples), chunk_size)]
    todo = [k for k in range(len(chunks)) if not finished(build_dir, k, chunks[k], meta)]
    known, answered = previous_rows([out, *reuse], meta)
    done_examples, t0 = 0, time.perf_counter()
    with tqdm(total=len(examples), initial=len(examples) - sum(len(chunks[k]) for k in todo),
              unit="q", desc="build") as bar:
        for k in todo:
            rows, feats, computed = reuse_or_run(engine, chunks[k], known, batch_size, max_new_tokens, bar.update,
                                                 answered)
            jsonl, npz = chunk_paths(build_dir, k)
            save_examples(jsonl, rows)  # rows first (a chunk counts as finished only once its npz exists too);
                                        # without the source packages' text, so chunks can be committed
            save_features(npz, feats, [r["id"] for r in rows], meta)
            done_examples += computed
    elapsed = time.perf_counter() - t0
    all_rows = merge(out, chunks, meta, rewrite=bool(done_examples))
    return {"examples": len(all_rows), "computed": done_examples, "seconds": elapsed,
            "per_second": done_examples / elapsed if elapsed > 0 else float("nan"),
            "label_rate": float(np.mean([r["label"] for r in all_rows if teaches_knows(r)] or [np.nan]))}


def merge(out: Path, chunks: list[list[Example]], meta: dict, rewrite: bool = False) -> list[dict]:
    """The finished chunks, relabelled, into examples.jsonl + features files (the big files are rewritten only when
    their rows changed: a relabel leaves them untouched)."""
    all_rows, parts = [], []
    for k, chunk in enumerate(chunks):
        jsonl, npz = chunk_paths(out / "build", k)
        all_rows += map(labelled, load_rows(jsonl), chunk)
        parts.append(load_features(npz)[0])
    save_examples(out / "examples.jsonl", all_rows)
    ids = [r["id"] for r in all_rows]
    if rewrite or dataset_index(out) != (ids, meta):
        save_dataset_features(out, concat(parts), ids, meta)
    return all_rows


def merge_built(out: Path) -> list[dict]:
    """Merge every chunk already built under `out`/build as it is, without the model: for a build finished on
    another machine (one with the dtype the chunks were computed in). Each row keeps the turn it was computed for
    (its id gives the text back, training.sources.by_id); a row whose turn has changed since is refused."""
    build_dir = out / "build"
    manifest = build_dir / "manifest.json"
    if not manifest.exists():
        raise SystemExit(f"{build_dir} holds no build (no manifest.json)")
    meta, rows = json.loads(manifest.read_text()), []
    while all(p.exists() for p in chunk_paths(build_dir, len(rows))):
        rows.append(load_rows(chunk_paths(build_dir, len(rows))[0]))
    examples = by_id([r for chunk in rows for r in chunk])
    chunks = [[examples[r["id"]] for r in chunk] for chunk in rows]
    if stale := [k for k, chunk in enumerate(chunks) if not finished(build_dir, k, chunk, meta)]:
        raise SystemExit(f"chunk {stale[0]} was built with other settings than {manifest}, or holds turns that have "
                         f"changed since; rebuild it with the model")
    return merge(out, chunks, meta)


def parse_sources(spec: str) -> dict[str, int | None]:
    """'red,simpleqa:800' -> {'red': None, 'simpleqa': 800} (None = all usable questions)."""
    out: dict[str, int | None] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, n = part.partition(":")
        out[name] = int(n) if n else None
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m training.build_dataset", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="gate.yaml to use (default: $GATE_CONFIG or the repo's gate.yaml)")
    ap.add_argument("--model", help="model id or local path (default: the config's model.id)")
    ap.add_argument("--sources", default=DEFAULT_SOURCES,
                    help="comma list of source[:max_n]: knowledge sources (" + ", ".join(SOURCES) + "), their "
                         "conversational variants (<source>~" + "|".join(VARIANTS) + ") and chat turns that are not "
                         "knowledge questions (" + ", ".join(CHAT_LOADERS) + "). Default: %(default)s")
    ap.add_argument("--limit", type=int, help="keep only the first N examples (smoke runs)")
    ap.add_argument("--batch-size", type=int, default=32, help="prompts per forward (default: %(default)s)")
    ap.add_argument("--chunk-size", type=int, default=256, help="examples per resumable chunk (default: %(default)s)")
    ap.add_argument("--max-new-tokens", type=int, default=24, help="greedy answer budget (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="sampling and order seed (default: %(default)s)")
    ap.add_argument("--out", type=Path, help="output folder (default: data/<model-slug>)")
    ap.add_argument("--reuse", type=Path, nargs="*", default=[],
                    help="other build folders whose rows (same model and settings) are taken by id, not recomputed")
    ap.add_argument("--threads", type=int, help="torch CPU threads (on a shared, busy CPU 1 avoids spinning threads)")
    ap.add_argument("--merge-only", action="store_true",
                    help="merge the chunks already built (all of them, as they are) without loading the model: for a "
                         "build finished on a machine with the dtype the chunks were computed in")
    args = ap.parse_args(argv)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)

    settings: Settings = load_settings(args.config)
    if args.model:
        settings.model.id = args.model
    out = args.out or data_dir(model_slug(settings.model.id))
    if args.merge_only:
        rows = merge_built(out)
        print(f"{len(rows)} turns merged in {out} (nothing computed)")
        return {"examples": len(rows), "computed": 0}
    examples = load_examples(parse_sources(args.sources), seed=args.seed)[:args.limit]
    from gate.engine.runtime import Engine
    engine = Engine(settings)
    stats = build(engine, examples, out, args.chunk_size, args.batch_size, args.max_new_tokens, tuple(args.reuse))
    print(f"{stats['examples']} turns in {out} (knowledge questions' label rate {stats['label_rate']:.3f}); computed "
          f"{stats['computed']} at {stats['per_second']:.2f}/s")
    return stats


if __name__ == "__main__":
    main()

"""Self-labelled dataset: one batched prompt forward per batch gives the features AND the prefill of the
model's own greedy answer; the label is 1 iff that answer contains a normalised gold or alias.

Resumable: examples are processed in fixed chunks, each saved atomically under data/<slug>/build/; a
restart skips finished chunks, so a build killed at any point loses at most the chunk in flight.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

from tqdm import tqdm

from gate.config import Settings, load_settings
from gate.engine.loading import model_slug
from training.normalize import matches
from training.sources import SOURCES, Example, load_examples
from training.store import concat, data_dir, load_features, load_rows, save_examples, save_features, save_rows

SHORT_INSTRUCTION = "Answer in a few words."


def wants_short(example_id: str) -> bool:
    """Half the prompts (fixed by id hash) carry a short-answer instruction: chat clients send both kinds."""
    return hashlib.sha1(example_id.encode()).digest()[0] % 2 == 0


def user_text(ex: Example) -> str:
    return f"{ex.question} {SHORT_INSTRUCTION}" if wants_short(ex.id) else ex.question


def dataset_meta(engine, max_new_tokens: int) -> dict:
    """What the features were computed with; a sidecar trained on them must match the serving engine."""
    from gate.sidecar import model_signature
    return {"signature": model_signature(engine), "max_new_tokens": max_new_tokens,
            "short_instruction": SHORT_INSTRUCTION}


def run_chunk(engine, examples: list[Example], batch_size: int, max_new_tokens: int) -> tuple[list[dict], object]:
    """Features and labelled rows for one chunk, batched by prompt length to limit left padding."""
    from gate.engine.generate import SamplingParams, generate_batch
    prompts = [engine.prompt([{"role": "user", "content": user_text(ex)}]) for ex in examples]
    order = sorted(range(len(examples)), key=lambda i: len(prompts[i]))
    preds: dict[int, str] = {}
    feats: dict[int, object] = {}
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        probe = engine.probe([prompts[i] for i in idx])
        answers = generate_batch(engine.model, engine.tokenizer, probe.capture,
                                 SamplingParams(max_tokens=max_new_tokens), engine.stop_ids)
        for j, i in enumerate(idx):
            preds[i], feats[i] = answers[j], probe.features[j:j + 1]
        del probe
    rows = [{**ex.to_dict(), "short": wants_short(ex.id), "prediction": preds[i], "label": int(matches(preds[i], ex.golds))}
            for i, ex in enumerate(examples)]
    return rows, concat([feats[i] for i in range(len(examples))])


def check_manifest(build_dir: Path, manifest: dict) -> None:
    """Finished chunks are reused only if they were built with the same model and settings."""
    path = build_dir / "manifest.json"
    if not path.exists():
        path.write_text(json.dumps(manifest, indent=1))
        return
    old = json.loads(path.read_text())
    bad = ", ".join(k for k, v in manifest.items() if old.get(k) != v)
    if bad:
        raise SystemExit(f"{build_dir} holds chunks built with different settings ({bad}); "
                         f"rerun with the same options or delete that folder")


def finished(build_dir: Path, k: int, chunk: list[Example]) -> bool:
    """A chunk is done when both files exist and hold exactly the expected examples (a changed --limit or
    seed changes the chunk, which is then recomputed)."""
    jsonl, npz = chunk_paths(build_dir, k)
    return jsonl.exists() and npz.exists() and [r["id"] for r in load_rows(jsonl)] == [e.id for e in chunk]


def chunk_paths(build: Path, k: int) -> tuple[Path, Path]:
    return build / f"chunk_{k:04d}.jsonl", build / f"chunk_{k:04d}.npz"


def build(engine, examples: list[Example], out: Path, chunk_size: int, batch_size: int, max_new_tokens: int) -> dict:
    """Process unfinished chunks, then merge all into examples.jsonl + features.npz. Returns throughput stats."""
    build_dir = out / "build"
    build_dir.mkdir(parents=True, exist_ok=True)
    meta = dataset_meta(engine, max_new_tokens)
    check_manifest(build_dir, meta)
    chunks = [examples[s:s + chunk_size] for s in range(0, len(examples), chunk_size)]
    todo = [k for k in range(len(chunks)) if not finished(build_dir, k, chunks[k])]
    done_examples, t0 = 0, time.perf_counter()
    with tqdm(total=len(examples), initial=len(examples) - sum(len(chunks[k]) for k in todo),
              unit="q", desc="build") as bar:
        for k in todo:
            rows, feats = run_chunk(engine, chunks[k], batch_size, max_new_tokens)
            jsonl, npz = chunk_paths(build_dir, k)
            save_rows(jsonl, rows)   # rows first: a chunk counts as finished only once its npz exists too
            save_features(npz, feats, [r["id"] for r in rows], meta)
            done_examples += len(rows)
            bar.update(len(rows))
    elapsed = time.perf_counter() - t0
    all_rows, parts = [], []
    for k in range(len(chunks)):
        jsonl, npz = chunk_paths(build_dir, k)
        all_rows += load_rows(jsonl)
        parts.append(load_features(npz)[0])
    save_examples(out / "examples.jsonl", all_rows)
    save_features(out / "features.npz", concat(parts), [r["id"] for r in all_rows], meta)
    return {"examples": len(all_rows), "computed": done_examples, "seconds": elapsed,
            "per_second": done_examples / elapsed if elapsed > 0 else float("nan"),
            "label_rate": sum(r["label"] for r in all_rows) / max(len(all_rows), 1)}


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
    ap.add_argument("--sources", default="red,simpleqa:800",
                    help=f"comma list of source[:max_n] from {', '.join(SOURCES)} (default: %(default)s)")
    ap.add_argument("--limit", type=int, help="keep only the first N examples (smoke runs)")
    ap.add_argument("--batch-size", type=int, default=32, help="prompts per forward (default: %(default)s)")
    ap.add_argument("--chunk-size", type=int, default=256, help="examples per resumable chunk (default: %(default)s)")
    ap.add_argument("--max-new-tokens", type=int, default=32, help="greedy answer budget (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="sampling and order seed (default: %(default)s)")
    ap.add_argument("--out", type=Path, help="output folder (default: data/<model-slug>)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (on a shared, busy CPU 1 avoids spinning threads)")
    args = ap.parse_args(argv)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)

    settings: Settings = load_settings(args.config)
    if args.model:
        settings.model.id = args.model
    examples = load_examples(parse_sources(args.sources), seed=args.seed)[:args.limit]
    from gate.engine.runtime import Engine
    engine = Engine(settings)
    out = args.out or data_dir(model_slug(settings.model.id))
    stats = build(engine, examples, out, args.chunk_size, args.batch_size, args.max_new_tokens)
    print(f"{stats['examples']} examples in {out} (label rate {stats['label_rate']:.3f}); computed "
          f"{stats['computed']} at {stats['per_second']:.2f}/s")
    return stats


if __name__ == "__main__":
    main()

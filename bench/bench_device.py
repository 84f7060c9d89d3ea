"""Does the shipped sidecar serve on another device and dtype? The served reading (Gate.probe: P(knows),
P(factual), the decision) of the same turns under each (device, dtype), against the first one listed.

    .venv/bin/python bench/bench_device.py [--rows 600] [--configs cpu:float32 cuda:float32 cuda:bfloat16]
    .venv/bin/python bench/bench_device.py --export turns.jsonl     # here, where the sources are installed
    python3 bench/bench_device.py --turns turns.jsonl               # there, e.g. on a GPU machine without them

Turns: the shipped dataset's random-split test rows (every correctly answered question and a seeded sample of
the others and of the chat turns, shuffled), rendered as the dataset asked them. Their texts come from the sources in
site-packages; `--export` writes them to a file (keep it out of the repo: the sources' licences) for a machine
that lacks the sources. The sidecar was trained on CPU float32 features, so cpu:float32 comes first by default.
Per config: max / mean |ΔP(knows)| and |ΔP(factual)| against the first config, decisions changed (pass /
abstain / hedge / answer at the configured bands), AUROC of P(knows) on the labelled questions, median probe ms.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gate.config import load_settings
from gate.pipeline import Gate

DEFAULT_CONFIGS = ["cpu:float32", *(["cuda:float32", "cuda:bfloat16"] if torch.cuda.is_available() else [])]


def export_turns(settings, n: int, seed: int = 0) -> list[dict]:
    """Test rows of the shipped dataset with their texts: all positives first, then a seeded sample."""
    from training.build_dataset import messages_of
    from training.sources import by_id
    from training.splits import load_splits
    from training.store import data_dir, load_examples

    directory = data_dir(settings.model.id)
    rows = load_examples(directory / "examples.jsonl")
    test = [rows[i] for i in load_splits(directory / "splits.json", rows)["random"]["test"]]
    positives = [r for r in test if r["label"] == 1]
    others = [r for r in test if r["label"] != 1]
    rng = random.Random(seed)
    picked = positives + rng.sample(others, max(0, min(len(others), n - len(positives))))
    rng.shuffle(picked)  # so that --rows keeps a mixed sample
    examples = by_id(picked)
    return [{"id": r["id"], "factual": r["factual"], "label": r["label"], "messages": messages_of(examples[r["id"]])}
            for r in picked]


def read_all(settings, turns: list[dict], config: str) -> dict[str, np.ndarray]:
    """Probe every turn through the served path on one (device, dtype)."""
    device, dtype = config.split(":")
    s = settings.model_copy(deep=True)
    s.model = s.model.model_copy(update={"device": device, "dtype": dtype})
    gate = Gate(s)
    gate.probe(turns[0]["messages"])  # warm-up (kernels, allocator)
    out: dict[str, list] = {"p_knows": [], "p_factual": [], "decision": [], "ms": []}
    for t in tqdm(turns, desc=config):
        view = gate.probe(t["messages"]).gate
        out["p_knows"].append(view.p_knows)
        out["p_factual"].append(view.p_factual)
        out["decision"].append(view.decision)
        out["ms"].append(view.probe_ms)
    del gate
    return {k: np.array(v) for k, v in out.items()}


def main() -> None:
    from training.evaluate import auroc

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="gate.yaml to use (default: $GATE_CONFIG or the repo's gate.yaml)")
    ap.add_argument("--rows", type=int, default=600, help="turns to read (default 600)")
    ap.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, help="device:dtype pairs, the first the reference")
    ap.add_argument("--export", type=Path, help="only write the turns (with texts) to this jsonl file")
    ap.add_argument("--turns", type=Path, help="read the turns from a file written by --export")
    args = ap.parse_args()
    settings = load_settings(args.config)
    if args.turns:
        turns = [json.loads(line) for line in args.turns.read_text().splitlines()][:args.rows]
    else:
        turns = export_turns(settings, args.rows)
    if args.export:
        args.export.write_text("".join(json.dumps(t) + "\n" for t in turns))
        print(f"wrote {len(turns)} turns to {args.export}")
        return
    labelled = np.array([t["label"] is not None for t in turns])
    labels = np.array([t["label"] or 0 for t in turns])[labelled]
    reads = {c: read_all(settings, turns, c) for c in args.configs}
    ref = reads[args.configs[0]]
    print(f"\n{len(turns)} turns ({labelled.sum()} labelled questions, {labels.sum()} answered correctly), "
          f"model {settings.model.id}, against {args.configs[0]}")
    print(f"{'config':<16} {'max|dPk|':>9} {'mean|dPk|':>9} {'max|dPf|':>9} {'decisions changed':>18} "
          f"{'AUROC':>6} {'probe ms p50':>12}")
    for c, r in reads.items():
        dk, df = np.abs(r["p_knows"] - ref["p_knows"]), np.abs(r["p_factual"] - ref["p_factual"])
        changed = int((r["decision"] != ref["decision"]).sum())
        print(f"{c:<16} {dk.max():>9.4f} {dk.mean():>9.4f} {df.max():>9.4f} {f'{changed} / {len(turns)}':>18} "
              f"{auroc(labels, r['p_knows'][labelled]):>6.3f} {statistics.median(r['ms']):>12.1f}")


if __name__ == "__main__":
    main()

"""What the applicability reading adds to a turn: P(factual) from features the probe already computed (no second
forward), timed against the probe forward itself on the same prompt. Usage:
python bench/bench_applicability.py [--reps 200] [--threads 1]"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from gate.applicability import load_for
from gate.config import load_settings
from gate.engine.runtime import Engine

PROMPTS = ("Hi! How are you today?", "Which element has the symbol Fe?",
           "Write a Python function that reverses a string.", "My name is Priya and I live in Leeds. Where do I live?")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=200, help="applicability readings per prompt (default: %(default)s)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    engine = Engine(load_settings())
    head = load_for(engine)
    if head is None:
        raise SystemExit("no applicability head for this model: python -m training.train first")
    print(f"model {engine.loaded.model_id}, torch threads {torch.get_num_threads()}, {args.reps} readings per prompt")
    print("| prompt | probe forward ms | P(factual) | reading ms (median) | reading ms (p95) | share of probe |")
    print("|---|---|---|---|---|---|")
    for text in PROMPTS:
        t0 = time.perf_counter()
        probe = engine.probe_chats([[{"role": "user", "content": text}]])
        probe_ms = (time.perf_counter() - t0) * 1000
        times = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            p = float(head.predict_proba(probe.features)[0])
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        med, p95 = statistics.median(times), times[int(0.95 * len(times)) - 1]
        print(f"| {text[:40]} | {probe_ms:.0f} | {p:.3f} | {med:.3f} | {p95:.3f} | {med / probe_ms:.2%} |")


if __name__ == "__main__":
    main()

"""Dataset-build throughput (examples/s): batched capture + generation vs one example at a time, same model,
same examples, one run each. Usage: python bench/bench_dataset.py [--n 32] [--batch-size 32] [--model qwen2.5-coder-1.5b-instruct]"""
from __future__ import annotations

import argparse
import time

import torch

from common import add_model_args, settings_from
from gate.engine.runtime import Engine
from training.build_dataset import run_chunk
from training.sources import load_examples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=32, help="examples per mode (default: %(default)s)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    add_model_args(ap)
    args = ap.parse_args()
    engine = Engine(settings_from(args))
    examples = load_examples({"red": None}, seed=1)[:args.n]
    run_chunk(engine, examples[:2], 2, 2)  # warm-up: first-call allocations are not throughput
    results = []
    for mode, bs in (("batched", args.batch_size), ("one at a time", 1)):
        t0 = time.perf_counter()
        rows, _ = run_chunk(engine, examples, bs, args.max_new_tokens)
        dt = time.perf_counter() - t0
        results.append((mode, bs, dt, len(rows) / dt, sum(r["label"] for r in rows)))
    print(f"model {engine.loaded.model_id}, {engine.dtype}, device {engine.device}, torch threads {torch.get_num_threads()}, "
          f"{args.n} examples, {args.max_new_tokens} new tokens max")
    print("| mode | batch | seconds | examples/s | labels=1 |\n|---|---|---|---|---|")
    for mode, bs, dt, rate, pos in results:
        print(f"| {mode} | {bs} | {dt:.1f} | {rate:.2f} | {pos} |")
    print(f"speed-up: {results[0][3] / results[1][3]:.2f}x")


if __name__ == "__main__":
    main()

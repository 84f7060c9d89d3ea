"""Probe overhead: capture + features vs the plain prefill forward of the same prompts (one run, ratios).

    .venv/bin/python bench/bench_probe.py [--reps 7] [--model qwen2.5-coder-1.5b-instruct] [--dtype bfloat16]

The plain forward is what generation's prefill does anyway (cache on, last-position logits); the
probe adds hooks, the lens product and the feature arithmetic, and the message read (the residual averaged over
the user message, where the model has one; "no msg" is the probe without it). Timings interleave the three.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from common import add_model_args, messages_of, settings_from
from gate.engine.capture import capture
from gate.engine.features import compute_features, hidden_layer_indices
from gate.engine.generate import prefill
from gate.engine.runtime import Engine


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, nargs="+", default=[50, 1000], help="prompt lengths (default: 50 1000)")
    add_model_args(ap)
    args = ap.parse_args()
    engine = Engine(settings_from(args))
    model, arch, fs = engine.model, engine.arch, engine.features

    @torch.inference_mode()
    def plain(ids, mask):
        prefill(model, ids, mask)

    message_layers = hidden_layer_indices(arch.num_layers, fs.message_depths)

    def probe(ids, mask, spans, layers):
        compute_features(arch, capture(model, arch, ids, mask, fs.positions, layers, spans), fs)

    print(f"model {engine.loaded.model_id} on {engine.device} ({engine.loaded.dtype}), "
          f"{torch.get_num_threads()} threads, median of {args.reps}")
    print(f"{'tokens':>7} {'batch':>6} {'plain ms':>9} {'probe ms':>9} {'ratio':>6} {'no msg ms':>9}")
    for tokens in args.tokens:
        for batch in (1, args.batch):
            questions = [f"Question {i}: what is the capital city of country number {i}?" for i in range(batch)]
            chats = [messages_of(engine, tokens, q) for q in questions]
            prompts = [engine.prompt(c) for c in chats]
            spans = [engine.span(p, c) for p, c in zip(prompts, chats)]
            ids, mask = engine.encode(prompts)
            runs = {"plain": lambda: plain(ids, mask), "probe": lambda: probe(ids, mask, spans, message_layers),
                    "no msg": lambda: probe(ids, mask, spans, ())}
            for run in runs.values():  # warm-up
                run()
            times: dict[str, list[float]] = {name: [] for name in runs}
            for _ in range(args.reps):
                for name, run in runs.items():
                    times[name].append(timed(run))
            pa, pb, pc = (statistics.median(times[name]) * 1e3 for name in runs)
            print(f"{ids.shape[1]:>7} {batch:>6} {pa:>9.1f} {pb:>9.1f} {pb / pa:>6.2f} {pc:>9.1f}")


if __name__ == "__main__":
    main()

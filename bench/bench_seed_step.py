"""What a seeded turn's first token costs on the vLLM engine, by seed length: the seed can only be computed after the
decision, so it is a second engine step after the prompt's — does its length or the step itself cost?

    .venv/bin/python bench/bench_seed_step.py [--turns 15] [--tokens 50] [--seeds 1 8 16 36]

In-process (the engine, no server, no HTTP), every turn a fresh prompt (nothing read from the prefix cache), the
kinds alternating within each round so load drift hits all alike. Rows: ungated (a plain request); the probe of a
turn that passes (the probe's session sampled the first token, taken at once); the probe of a seeded turn, with seeds
of n tokens (filler text cut to n tokens: only the length matters here). First token = the read (probe and its
residual features) through the first generated token, in ms; medians, and each kind over ungated.
"""
from __future__ import annotations

import argparse
import statistics
import time

from bench_engines import prompts
from common import FILLER, add_model_args, settings_from
from gate.engine.generate import SamplingParams
from gate.engine.vllm_engine import VllmEngine


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=15, help="turns of each kind (default: %(default)s)")
    ap.add_argument("--tokens", type=int, default=50, help="prompt tokens, about (default: %(default)s)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 8, 16, 36], help="seed lengths in tokens")
    add_model_args(ap)
    args = ap.parse_args(argv)
    settings = settings_from(args)
    settings.model.engine = "vllm"
    engine = VllmEngine(settings)
    params = SamplingParams(max_tokens=2)
    filler = engine.tokens(FILLER * 4)
    kinds: list[str | int] = ["ungated", "passed", *args.seeds]
    times: dict[str | int, list[float]] = {k: [] for k in kinds}
    # distinct questions first, so no two prompts share a cached block beyond the system prompt
    fresh = iter(prompts(engine, args.turns * len(kinds), args.tokens))
    try:
        for _ in range(args.turns):
            for kind in kinds:
                messages = next(fresh)
                prompt = engine.prompt(messages)
                ids, span = engine.tokens_and_span(prompt, messages)
                start = time.perf_counter()
                read = None if kind == "ungated" else engine.read(ids, probe=True, span=span, params=params)
                steps = (engine.stream(ids, params) if read is None else
                         read.tokens([] if kind == "passed" else filler[:kind], params))
                next(steps)
                times[kind].append((time.perf_counter() - start) * 1000)
                list(steps)
                if read is not None:
                    read.close()
    finally:
        engine.close()
    base = statistics.median(times["ungated"])
    print(f"model {settings.model.id}, vLLM engine, dtype {engine.dtype}, ~{len(ids)}-token prompts, "
          f"{args.turns} turns per kind, in-process")
    print("| turn | first token ms (median) | × ungated |\n|---|---|---|")
    for kind, ms in times.items():
        name = kind if isinstance(kind, str) else f"seeded, {kind}-token seed"
        print(f"| {name} | {statistics.median(ms):.0f} | {statistics.median(ms) / base:.2f} |")


if __name__ == "__main__":
    main()

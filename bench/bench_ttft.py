"""Time to first token and total time of a chat turn, as ratios, in one run on the configured model.

    .venv/bin/python bench/bench_ttft.py [--reps 5] [--max-tokens 32] [--model qwen2.5-coder-1.5b-instruct] [--tokens 50 200]

(a) `seed` mode vs generating from the same final prompt (prompt + the same seed) with no probe:
    the cost of knowing. The probe forward is the prefill, so only the features, the sidecar and the
    seed's own forward are added; a design that ran the prompt twice would show ≈2× here.
(b) `seed` vs `off`: what a user feels.  (c) `gate` mode's abstention (nothing generated) vs `off`.
(d) a turn that is not a knowledge question (`seed` mode, passed by the applicability head) vs `off` on the same
    prompt: with the head's early read (the residual alone decides, the lens is never computed) and, (d'), with
    the full read alone (the lens computed for every turn, as before the cascade).

All turns go through Gate (the real entry point) except the no-probe reference, which uses the same
prefill/decoding functions. First-token times count from the moment the turn gets the model. Within a rep
the four runs go back to back (order alternating between reps) and ratios are taken within the rep;
medians over reps are printed. Without a trained sidecar a fixed stand-in P(knows) is used (said below).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import torch

from common import add_model_args, messages_of, settings_from
from gate.engine.generate import SamplingParams, continue_tokens, prefill
from gate.pipeline import Gate
from gate.turns import TurnOverrides


DPRIME = "(d')"
PASSING = "Write a short poem about the text above."  # not a knowledge question: the gate passes it


class _Fixed:
    """Stand-in sidecar (only when no checkpoint exists, and for the abstention row)."""

    def __init__(self, p: float):
        self.p = p

    def predict_proba(self, features) -> np.ndarray:
        return np.full(features.hidden.shape[0], self.p)


def no_probe(gate: Gate, messages: list[dict], seed: str, params: SamplingParams) -> tuple[float, float, int]:
    """Reference: one plain prefill of prompt + seed, then decoding; (first-token ms, total ms, tokens)."""
    engine = gate.engine
    prompt = engine.prompt(messages)
    ids, _ = engine.encode([prompt])
    start = time.perf_counter()
    extra = torch.tensor([engine.seed_ids(prompt, seed)], dtype=torch.long, device=engine.device)
    full = torch.cat([ids, extra], dim=1)
    first, n = None, 0
    for tok in continue_tokens(engine.model, prefill(engine.model, full, torch.ones_like(full)), params, gate.eos_ids):
        first = first or (time.perf_counter() - start) * 1e3
        n += 1
        if int(tok[0]) in gate.eos_ids:
            break
    return first, (time.perf_counter() - start) * 1e3, n


def per_token(first_ms: float, total_ms: float, tokens: float) -> float:
    return (total_ms - first_ms) / max(tokens - 1, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--tokens", type=int, nargs="+", default=[50, 200, 1000],
                    help="prompt lengths (default: 50 200 1000)")
    add_model_args(ap)
    args = ap.parse_args()
    settings = settings_from(args)
    gate = Gate(settings)
    stand_in = gate.sidecar is None
    if stand_in:
        gate.sidecar = _Fixed(0.9)
    abstainer = Gate(settings, engine=gate.engine, sidecar=_Fixed(0.05))
    full_read = copy.copy(gate.applicability)
    if full_read is not None:  # the same head with its early read off: every turn waits for the lens
        full_read.hp = {**full_read.hp, "early": (0.0, float("inf"))}
    no_cascade = Gate(settings, engine=gate.engine, sidecar=gate.sidecar, applicability=full_read)
    params = SamplingParams(max_tokens=args.max_tokens)
    # The seeded rows are gated whatever the head says (with a long filler before it, the question reads like
    # one about a given passage, which the gate would pass); the passing row keeps the served threshold.
    ov = {m: TurnOverrides(mode=m, max_tokens=args.max_tokens, factual_threshold=0.0) for m in ("off", "seed", "gate")}
    ov["pass"] = TurnOverrides(mode="seed", max_tokens=args.max_tokens)
    engine = gate.engine
    print(f"model {engine.loaded.model_id} on {engine.device} ({engine.loaded.dtype}), {torch.get_num_threads()} "
          f"threads, greedy, ≤{args.max_tokens} tokens, median of {args.reps}"
          + (" — NO sidecar checkpoint: stand-in P(knows)=0.9" if stand_in else ""))
    head = (f"{'prompt':>6} | {'probe':>6} {'seed':>6} {'ref':>6} {'(a) ttft':>8} {'(a) total':>9} | {'off':>6} "
            f"{'(b) ttft':>8} {'(b) total':>9} | {'abstain':>7} {'(c)':>5} | {'ms/token seed/ref/off':>21} | "
            f"{'pass':>5} {'(d)':>5} {DPRIME:>5} {'early':>5}")
    print(head + "\n" + "-" * len(head), flush=True)
    for tokens in args.tokens:
        messages = messages_of(engine, tokens)
        chat = messages_of(engine, tokens, PASSING)
        warm = gate.chat(messages, ov["seed"])  # warm-up; its seed text is the reference's (p is deterministic)
        runs = {"seed": lambda: gate.chat(messages, ov["seed"]),
                "ref": lambda: no_probe(gate, messages, warm.gate.seed_text, params),
                "off": lambda: gate.chat(messages, ov["off"]),
                "abstain": lambda: abstainer.chat(messages, ov["gate"]),
                "pass": lambda: gate.chat(chat, ov["pass"]), "pass_full": lambda: no_cascade.chat(chat, ov["pass"]),
                "chat_off": lambda: gate.chat(chat, ov["off"])}
        reps = []
        for rep in range(args.reps):  # alternate the order so drifting load hits every kind alike
            order = list(runs) if rep % 2 == 0 else list(runs)[::-1]
            got = {k: runs[k]() for k in order}
            sd, off = got["seed"], got["off"]
            r_first, r_total, r_n = got["ref"]
            reps.append({
                "probe": sd.gate.probe_ms, "seed": sd.first_token_ms, "ref": r_first, "off": off.first_token_ms,
                "abstain": got["abstain"].total_ms,
                "a_ttft": sd.first_token_ms / r_first, "a_total": sd.total_ms / r_total,
                "b_ttft": sd.first_token_ms / off.first_token_ms, "b_total": sd.total_ms / off.total_ms,
                "c": got["abstain"].total_ms / off.first_token_ms,
                "tok_seed": per_token(sd.first_token_ms, sd.total_ms, sd.completion_tokens),
                "tok_ref": per_token(r_first, r_total, r_n),
                "tok_off": per_token(off.first_token_ms, off.total_ms, off.completion_tokens),
                "d": got["pass"].first_token_ms / got["chat_off"].first_token_ms,
                "d_full": got["pass_full"].first_token_ms / got["chat_off"].first_token_ms,
                "passed": float(got["pass"].gate.decision == "pass" and got["pass_full"].gate.decision == "pass"),
                "early": float(gate.applicability is not None and gate.applicability.cascades
                               and got["pass"].gate.p_factual < gate.applicability.hp["early"][0])})
        m = {k: (statistics.mean if k in ("passed", "early") else statistics.median)(r[k] for r in reps)
             for k in reps[0]}
        rates = f"{m['tok_seed']:.0f}/{m['tok_ref']:.0f}/{m['tok_off']:.0f}"
        print(f"{warm.prompt_tokens:>6} | {m['probe']:>6.0f} {m['seed']:>6.0f} {m['ref']:>6.0f} {m['a_ttft']:>8.2f} "
              f"{m['a_total']:>9.2f} | {m['off']:>6.0f} {m['b_ttft']:>8.2f} {m['b_total']:>9.2f} | "
              f"{m['abstain']:>7.0f} {m['c']:>5.2f} | {rates:>21} | {m['passed']:>5.0%} {m['d']:>5.2f} "
              f"{m['d_full']:>5.2f} {m['early']:>5.0%}", flush=True)
    print("ms and ratios are medians over reps (ratios paired within a rep); probe = prompt forward + features +\n"
          "sidecar; seed/ref/off = time to first token; abstain = the whole gate-mode turn.\n"
          "(a) seed vs the no-probe reference on prompt + seed (same greedy tokens; target ≤ 1.15 on ttft)\n"
          "(b) seed vs off (different replies, so the total ratio also reflects reply length)\n"
          "(c) gate-mode abstention (whole turn, nothing generated) / off time to first token\n"
          "(d) a turn the gate passes (seed mode) / off on the same prompt, time to first token; (d') the same with\n"
          "the full applicability read alone (the lens computed); pass / early: share of reps passed / decided early")


if __name__ == "__main__":
    main()

"""Transformers vs vLLM engine behind the real server: 1, 8 and 16 concurrent streaming clients, gated
(`seed` mode on knowledge questions: probe, P(knows), seed, generation), gated turns that pass (`seed` mode on
requests that are not knowledge questions: probe, P(factual), the plain reply) and ungated (`off`), one table.

    .venv/bin/python bench/bench_engines.py [--clients 1 8 16] [--per-client 1] [--tokens 50] [--max-tokens 16]

Each engine serves from its own `gate serve` process (same settings but `model.engine`); both are up at
once and the cells alternate between them, so load drift on a shared machine hits both alike.
Every client streams its requests back to back with the `openai` client; requests/s = finished requests /
wall time of the cell, TTFT = request sent → first chunk carrying text (after the role/gate chunk),
tokens/s = completion tokens (from usage) / wall time. Prompts are distinct questions padded to about
`--tokens` prompt tokens (question first, so no two prompts share a full KV block beyond the system
prompt), and every cell gets prompts of its own: a prompt an earlier cell sent would be read from vLLM's
prefix cache (an ungated cell after the gated one would compute only the tail after the cached blocks and
look ~2× faster at 1 client than a cold prompt). Greedy decoding; both engines produce the same tokens in
float32. A failed request (an exception or an error event) counts in `failed`, not in requests/s. The two
targets are printed under the table.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import openai

from bench_server import server_process
from common import FILLER
from gate.config import load_settings
from gate.engine.runtime import Engine

QUESTIONS = ["What is the capital of Australia?", "Who wrote the novel Moby-Dick?", "Which planet is the largest?",
             "What is the chemical symbol of gold?", "Who painted the Mona Lisa?", "What is the tallest mountain?",
             "In which year did the Second World War end?", "What language is spoken in Brazil?"]


KINDS = {"seed": "seed", "pass": "seed", "off": "off"}  # a cell's kind → the mode its requests ask for
LABELS = {"seed": "gated", "pass": "gated, passed", "off": "ungated"}
CHAT_ASKS = ["Rewrite this paragraph in plain words:", "Write a short poem inspired by this text:",
             "Summarise this paragraph in one sentence:", "Translate this paragraph into French:"]


def prompts(engine: Engine, count: int, tokens: int, leads: list[str] = QUESTIONS, label: str = "Question"
            ) -> list[list[dict]]:
    """`count` distinct user turns, lead first (a question, or a request about the filler text that follows),
    padded with filler to about `tokens` prompt tokens."""
    out = []
    for i in range(count):
        lead = f"{label} {i}: {leads[i % len(leads)]}"
        words: list[str] = []
        while len(engine.tokens(engine.prompt([{"role": "user", "content": " ".join([lead, *words])}]))) < tokens:
            words.append(FILLER.split()[len(words) % len(FILLER.split())])
        out.append([{"role": "user", "content": " ".join([lead, *words])}])
    return out


def one(client: openai.OpenAI, model: str, messages: list[dict], mode: str, max_tokens: int
        ) -> tuple[float, int, str | None]:
    """One streamed request: (TTFT s, completion tokens, the gate's decision); raises on any failure."""
    start, first, used, decision = time.perf_counter(), None, None, None
    stream = client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens, temperature=0,
                                            stream=True, stream_options={"include_usage": True},
                                            extra_body={"gate": {"mode": mode}})
    for chunk in stream:
        decision = decision or (getattr(chunk, "gate", None) or {}).get("decision")
        delta = chunk.choices[0].delta if chunk.choices else None
        if first is None and delta and (delta.content or getattr(delta, "reasoning_content", None)):
            first = time.perf_counter() - start
        if chunk.usage:
            used = chunk.usage.completion_tokens
    if first is None or used is None:
        raise RuntimeError("the stream ended without text or usage")
    return first, used, decision


def cell(client: openai.OpenAI, model: str, turns: list[list[dict]], clients: int, per_client: int, mode: str,
         max_tokens: int) -> dict:
    """`clients` threads, each streaming `per_client` requests back to back."""
    ttfts, tokens, failed, errors, passed = [], 0, 0, set(), 0

    def worker(c: int) -> None:
        nonlocal tokens, failed, passed
        for r in range(per_client):
            try:
                first, used, decision = one(client, model, turns[(c * per_client + r) % len(turns)], mode, max_tokens)
            except Exception as exc:
                failed += 1
                errors.add(f"{type(exc).__name__}: {exc}"[:200])
                continue
            ttfts.append(first)
            tokens += used
            passed += decision == "pass"

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    wall = time.perf_counter() - start
    return {"requests": len(ttfts), "failed": failed, "errors": errors, "passed": passed, "rps": len(ttfts) / wall, "tps": tokens / wall,
            "p50": 1000 * statistics.median(ttfts) if ttfts else float("nan"),
            "p95": 1000 * float(np.percentile(ttfts, 95)) if ttfts else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 16])
    ap.add_argument("--per-client", type=int, default=1, help="requests each client streams (1 client: 3× more)")
    ap.add_argument("--tokens", type=int, default=50, help="prompt tokens, about")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the transformers server")
    ap.add_argument("--engines", nargs="+", default=["transformers", "vllm"])
    ap.add_argument("--config", default=None)
    args = ap.parse_args()
    base = load_settings(args.config)
    base.server.ui, base.server.api_key = False, None
    cells = [(clients, kind) for clients in args.clients for kind in KINDS]
    sent = [clients * args.per_client * (3 if clients == 1 else 1) for clients, _ in cells]
    engine = Engine(base)
    questions = iter(prompts(engine, 1 + sum(n for (_, kind), n in zip(cells, sent) if kind != "pass"), args.tokens))
    chat = iter(prompts(engine, sum(n for (_, kind), n in zip(cells, sent) if kind == "pass"), args.tokens, CHAT_ASKS,
                        "Request"))
    warm = next(questions)
    model = base.server.model_name or base.model.id
    results: dict[tuple[str, str, int], dict] = {}
    with contextlib.ExitStack() as stack:
        clients_of = {}
        for name in args.engines:  # both servers up at once, cells interleaved: load drift hits both alike
            settings = base.model_copy(deep=True)
            settings.model.engine = name
            url = stack.enter_context(server_process(settings, args.threads, timeout_s=900))
            clients_of[name] = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=1800)
            for mode in ("seed", "off"):
                one(clients_of[name], model, warm, mode, 4)  # warm-up
        for (clients, kind), n in zip(cells, sent):
            mine = [next(chat if kind == "pass" else questions) for _ in range(n)]
            for name, client in clients_of.items():
                results[name, kind, clients] = r = cell(client, model, mine, clients, n // clients, KINDS[kind],
                                                        args.max_tokens)
                print(f"  {name} {kind} {clients} clients: {r['rps']:.2f} req/s, {r['failed']} failed", flush=True)
    print(f"\nmodel {model}, dtype {base.model.dtype}, ~{args.tokens}-token prompts, max_tokens {args.max_tokens}, "
          f"greedy; gated = seed mode on questions, pass = seed mode on requests that are not knowledge questions "
          f"(`passed`: turns the gate passed), ungated = off")
    print("| engine | gate | clients | requests | failed | passed | req/s | TTFT p50 ms | TTFT p95 ms | tokens/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    order = list(KINDS)
    for (name, kind, clients), r in sorted(results.items(), key=lambda kv: (kv[0][0], order.index(kv[0][1]), kv[0][2])):
        print(f"| {name} | {LABELS[kind]} | {clients} | {r['requests']} | {r['failed']} | {r['passed']} | "
              f"{r['rps']:.2f} | {r['p50']:.0f} | {r['p95']:.0f} | {r['tps']:.1f} |")
    for (name, kind, clients), r in results.items():
        for error in r["errors"]:
            print(f"failed ({name} {kind} {clients} clients): {error}")
    if {"transformers", "vllm"} <= set(args.engines):
        for clients in args.clients:
            speedup = results["vllm", "seed", clients]["rps"] / results["transformers", "seed", clients]["rps"]
            print(f"gated req/s, vLLM / transformers at {clients} clients: {speedup:.1f}×"
                  + (" (target ≥ 5× at 8)" if clients == 8 else ""))
    if "vllm" in args.engines:
        for clients in args.clients:
            for kind in ("seed", "pass"):
                ratio = results["vllm", kind, clients]["p50"] / results["vllm", "off", clients]["p50"]
                print(f"vLLM TTFT p50 {LABELS[kind]} / ungated at {clients} clients: {ratio:.2f}×"
                      + (" (target ≤ 1.2×)" if clients == 1 else ""))


if __name__ == "__main__":
    main()

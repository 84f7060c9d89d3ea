"""Server overhead: time to first token through HTTP vs calling the Gate in-process, and requests/s with
several concurrent clients vs back-to-back in-process turns (one run, one table).

    .venv/bin/python bench/bench_server.py [--reps 8] [--clients 4 8] [--max-tokens 16] [--threads 1]

The server runs as deployed, in its own process (`gate serve`, same settings, same torch threads), so the
GIL of the benchmark's client threads is not the server's. TTFT is taken in pairs (one in-process, one
HTTP) so load drift on a shared machine hits both alike; which goes first alternates, because going
second was measurably faster (~100 ms here). "First token" is the first piece of generated text
(in-process: the first Delta; HTTP: the first chunk carrying text, after the role/gate chunk).
"""
from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import torch

from common import server_process
from gate.config import load_settings
from gate.pipeline import Gate
from gate.turns import Delta, TurnOverrides

QUESTIONS = [f"What is the capital city of the country that ranks number {i} by area?" for i in range(64)]


def messages(i: int) -> list[dict]:
    return [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]


def in_process_ttft(gate: Gate, i: int, max_tokens: int) -> float:
    start = time.perf_counter()
    stream = gate.stream(messages(i), TurnOverrides(max_tokens=max_tokens, temperature=0))
    try:
        for event in stream:
            if isinstance(event, Delta) and event.text:
                return time.perf_counter() - start
    finally:
        stream.close()
    raise RuntimeError("no text generated")


def http_ttft(client: openai.OpenAI, model: str, i: int, max_tokens: int) -> float:
    start = time.perf_counter()
    with client.chat.completions.create(model=model, messages=messages(i), max_tokens=max_tokens,
                                        temperature=0, stream=True) as stream:
        for chunk in stream:
            delta = chunk.choices[0].delta if chunk.choices else None
            if delta and (delta.content or getattr(delta, "reasoning_content", None)):
                return time.perf_counter() - start
    raise RuntimeError("no text generated")


def in_process_rate(gate: Gate, n: int, max_tokens: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        gate.chat(messages(i), TurnOverrides(max_tokens=max_tokens, temperature=0))
    return n / (time.perf_counter() - start)


def http_rate(client: openai.OpenAI, model: str, clients: int, n: int, max_tokens: int) -> float:
    def one(i: int) -> None:
        client.chat.completions.create(model=model, messages=messages(i), max_tokens=max_tokens, temperature=0)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(n)))
    return n / (time.perf_counter() - start)


def ms(samples: list[float], signed: bool = False) -> str:
    return f"{1000 * statistics.median(samples):{'+' if signed else ''}8.0f} ms (IQR {1000 * _iqr(samples):.0f})"


def _iqr(samples: list[float]) -> float:
    q = statistics.quantiles(samples, n=4)
    return q[2] - q[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=8, help="TTFT samples per side")
    ap.add_argument("--clients", type=int, nargs="+", default=[4, 8], help="concurrent HTTP clients to try")
    ap.add_argument("--requests", type=int, default=16, help="requests per throughput measurement")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None, help="torch threads, both processes (default: torch's)")
    ap.add_argument("--config", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = load_settings(args.config)
    settings.server.ui, settings.server.api_key = False, None
    gate = Gate(settings)
    model = settings.server.model_name or settings.model.id
    print(f"model {gate.engine.model_id} on {gate.engine.device}, {torch.get_num_threads()} torch threads, "
          f"mode {settings.policy.mode}, sidecar {'loaded' if gate.sidecar is not None else 'none (not gated)'}, "
          f"max_tokens {args.max_tokens}")
    with server_process(settings, torch.get_num_threads()) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=300)
        in_process_ttft(gate, 0, 2)  # warm both paths
        http_ttft(client, model, 0, 2)
        local, remote = [], []
        for i in range(args.reps):  # pairs, taken in alternating order so neither side always goes first
            pair = [lambda: local.append(in_process_ttft(gate, i, args.max_tokens)),
                    lambda: remote.append(http_ttft(client, model, i, args.max_tokens))]
            for measure in pair[::1 if i % 2 else -1]:
                measure()
        rows = [("TTFT in-process (Gate.stream)", ms(local)), ("TTFT via HTTP (openai client, SSE)", ms(remote)),
                ("HTTP overhead on TTFT, median of pairs", ms([r - l for r, l in zip(remote, local)], signed=True))]
        rows.append(("req/s in-process, back to back", f"{in_process_rate(gate, args.requests, args.max_tokens):8.2f}"))
        for clients in args.clients:
            rate = http_rate(client, model, clients, args.requests, args.max_tokens)
            rows.append((f"req/s via HTTP, {clients} concurrent clients", f"{rate:8.2f}"))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()

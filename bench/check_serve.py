"""Scripted check: `gate serve` on a chosen model answers through the real openai client.

    .venv/bin/python bench/check_serve.py --model qwen2.5-coder-1.5b-instruct [--threads 2]

Starts the server as deployed (its own process, a free loopback port, the config with the command line's
model choice; the model installs on first use), asks one question non-streamed and one streamed, prints the
replies with the gate's view, and exits non-zero if either reply is empty. A model without a trained sidecar
answers ungated; the gate's view says so ("no sidecar").
"""
from __future__ import annotations

import argparse
import sys
import time

import openai

from common import add_model_args, server_process, settings_from

QUESTION = [{"role": "user", "content": "What is the capital of Australia?"}]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--timeout", type=float, default=900, help="seconds to wait for the server to come up")
    add_model_args(ap)
    args = ap.parse_args()
    settings = settings_from(args)
    settings.server.ui, settings.server.api_key = False, None
    name = settings.server.model_name or settings.model.id
    start = time.perf_counter()
    with server_process(settings, settings.model.threads or 2, args.timeout) as base:
        print(f"server up at {base} in {time.perf_counter() - start:.0f} s (model {name})")
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=600)
        t = time.perf_counter()
        reply = client.chat.completions.create(model=name, messages=QUESTION, max_tokens=args.max_tokens, temperature=0)
        print(f"non-streamed ({time.perf_counter() - t:.1f} s): {reply.choices[0].message.content!r}\n"
              f"  gate: {reply.model_extra.get('gate')}")
        t, first, parts = time.perf_counter(), None, []
        with client.chat.completions.create(model=name, messages=QUESTION, max_tokens=args.max_tokens,
                                            temperature=0, stream=True) as stream:
            for chunk in stream:
                delta = chunk.choices[0].delta if chunk.choices else None
                if delta and delta.content:
                    first = first or time.perf_counter() - t
                    parts.append(delta.content)
        print(f"streamed (first text after {first or float('nan'):.2f} s): {''.join(parts)!r}")
    ok = bool(reply.choices[0].message.content.strip()) and bool("".join(parts).strip())
    print("OK" if ok else "FAILED: an empty reply")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

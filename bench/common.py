"""Shared by the benchmarks: the model choice on the command line, prompts of a chosen length."""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from typing import Iterator

import httpx
import yaml

from gate.config import Settings, load_settings
from gate.engine.runtime import Engine

FILLER = ("The history of the region is long and varied, with many kingdoms rising and falling over the "
          "centuries, each leaving its mark on the language, the architecture and the customs of the people. ")


def messages_of(engine: Engine, tokens: int, question: str = "What is the capital city of Australia?") -> list[dict]:
    """One user turn whose served prompt has about `tokens` tokens, ending in `question`."""
    words = FILLER.split()

    def length(n: int) -> int:
        return len(engine.encode([engine.prompt(body(n))])[0][0])

    def body(n: int) -> list[dict]:
        return [{"role": "user", "content": " ".join((words * (1 + n // len(words)))[:n] + [question])}]

    lo, hi = 0, 1
    while length(hi) < tokens:  # grow, then bisect on the number of filler words
        lo, hi = hi, hi * 2
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if length(mid) < tokens else (lo, mid)
    return body(lo)


def add_model_args(ap: argparse.ArgumentParser) -> None:
    """--config, --model, --dtype, --threads: which model the benchmark runs, as in gate.yaml."""
    ap.add_argument("--config", help="gate.yaml to use (default: $GATE_CONFIG or the repo's gate.yaml)")
    ap.add_argument("--model", help="model.id, e.g. qwen2.5-coder-1.5b-instruct (default: the config's)")
    ap.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), help="model.dtype (default: the config's)")
    ap.add_argument("--threads", type=int, help="model.threads: torch CPU threads (default: the config's)")


def settings_from(args: argparse.Namespace) -> Settings:
    """The config's settings with the command line's model choices applied."""
    settings = load_settings(args.config)
    given = {k: v for k, v in (("id", args.model), ("dtype", args.dtype), ("threads", args.threads)) if v}
    return settings.model_copy(update={"model": settings.model.model_copy(update=given)})


@contextmanager
def server_process(settings: Settings, threads: int, timeout_s: float = 180) -> Iterator[str]:
    """`gate serve` on a free loopback port with these settings; yields the base URL once /health answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as config, tempfile.TemporaryFile("w+") as log:
        yaml.safe_dump(settings.model_dump(mode="json"), config)
        config.flush()
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        proc = subprocess.Popen([sys.executable, "-m", "gate.cli", "--config", config.name, "serve",
                                 "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=log, stderr=log)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    httpx.get(f"{base}/health").raise_for_status()
                    break
                except httpx.TransportError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        raise RuntimeError(f"the server did not come up:\n{log.read()[-2000:]}") from None
                    time.sleep(0.2)
            yield base
        finally:
            proc.terminate()
            proc.wait(timeout=30)

"""A bounded schemathesis run against the live server, the real Gate and the default model behind it.

Schemathesis reads the server's own /openapi.json (with `model` pinned to the served id) and sends a few
hundred requests, valid and invalid, through every phase; `bench/bench_fuzz.py` runs it and counts the
responses (the longer run's result is in gate/adapters/SERVER.md). Generation is kept to 2 tokens, also as the
server's max_tokens limit, so the document the fuzzer reads allows no more; and the Gate here takes prompts
of at most 256 tokens, so a long generated conversation is refused (400 context_length_exceeded) instead of
costing seconds of forward pass. Turns default to `off` mode (requests that set `gate.mode` are gated), to
keep the run near a minute and a half.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gate.pipeline import Gate
from test_server import gate, live_server, server_settings  # noqa: F401 - `gate` is a fixture used here

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_fuzz.py"


def test_fuzzing_finds_no_server_error_and_no_mismatch_with_the_document(settings, gate, tmp_path):  # noqa: F811
    fuzzed = server_settings(settings)
    fuzzed.generation.max_tokens = fuzzed.server.max_tokens_limit = 2
    fuzzed.policy.mode = "off"  # cheaper turns by default; the fuzzer's own `gate.mode` still runs seed and gate
    short = Gate(fuzzed, engine=gate.engine, sidecar=gate.sidecar)
    short.context_window = 256
    summary_path = tmp_path / "summary.json"
    with live_server(fuzzed, short) as url:
        run = subprocess.run([sys.executable, str(BENCH), "--url", url, "--examples", "3", "--seed", "0",
                              "--json", str(summary_path)], capture_output=True, text=True, timeout=1800)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    assert summary["exit_code"] == 0, summary["failures"] or run.stdout[-3000:]
    assert summary["server_errors"] == 0 and not summary["failures"] and not summary["errors"]
    assert summary["requests"] >= 200
    assert summary["statuses"].get("200", 0) >= 50  # many reached the model, not only the validator
    print(f"\nschemathesis: {summary['test_cases']} test cases, {summary['requests']} requests, "
          f"statuses {summary['statuses']}, {summary['seconds']} s; slowest {summary['slowest']}")

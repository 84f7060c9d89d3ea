"""API fuzzing of the OpenAI-compatible server with schemathesis, from its own /openapi.json (one run, one table).

    .venv/bin/python bench/bench_fuzz.py [--examples 100] [--seed 0] [--workers 2] [--threads 1]
    .venv/bin/python bench/bench_fuzz.py --url http://127.0.0.1:8000 --examples 20   # a server already running

Without --url it starts `gate serve` in its own process, with generation kept short (`--max-tokens`, also the
server's max_tokens limit, so the document the fuzzer reads allows no more). The document is fetched from the
server with one change: `model` is pinned to the served id, so requests reach the model instead of stopping at
404. Schemathesis runs every phase (examples, coverage, fuzzing, stateful) in positive and negative modes with
the checks below; every request and response is recorded (HAR) and counted here by status.

Checks: no 5xx, status codes / content types / headers / bodies as documented, schema-invalid data refused,
405 + Allow for undeclared methods. Not `positive_data_acceptance`: some valid-looking requests are refused on
purpose and JSON Schema cannot say so (bands must be ordered, a prompt must fit the context window, tools only
with tool_choice "none").
"""
from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
          "response_schema_conformance,negative_data_rejection,unsupported_method,allow_header_conformance")


def pinned_document(base: str) -> tuple[dict, str]:
    """The server's OpenAPI document with `model` pinned to the one id it serves."""
    served = httpx.get(f"{base}/v1/models").json()["data"][0]["id"]
    doc = httpx.get(f"{base}/openapi.json").json()
    doc["components"]["schemas"]["ChatCompletionRequest"]["properties"]["model"] = {"type": "string",
                                                                                    "enum": [served]}
    return doc, served


def fuzz(base: str, examples: int, seed: int, workers: int, timeout_s: float = 600) -> dict:
    """Run schemathesis against `base`; returns its summary plus the requests it sent, counted by status."""
    doc, served = pinned_document(base)
    with tempfile.TemporaryDirectory() as tmp:  # also keeps schemathesis' crash cache out of the repo
        (Path(tmp) / "openapi.json").write_text(json.dumps(doc))
        started = time.perf_counter()
        run = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", "openapi.json", "--url", base, "-n", str(examples),
             "--seed", str(seed), "--workers", str(workers), "--checks", CHECKS, "--request-timeout", "120",
             "--report", "json,har", "--report-json-path", "report.json", "--report-har-path", "requests.har",
             "--no-color"], cwd=tmp, capture_output=True, text=True, timeout=timeout_s)
        seconds = time.perf_counter() - started
        report = json.loads((Path(tmp) / "report.json").read_text())
        entries = json.loads((Path(tmp) / "requests.har").read_text())["log"]["entries"]
    statuses = collections.Counter(e["response"]["status"] for e in entries)
    slowest = sorted(entries, key=lambda e: e["time"], reverse=True)[:5]
    return {"model": served, "exit_code": run.returncode, "seconds": round(seconds, 1),
            "test_cases": report["test_cases"]["generated"], "failures": report["failures"],
            "errors": report["errors"], "requests": len(entries),
            "statuses": dict(sorted(statuses.items())), "server_errors": sum(n for s, n in statuses.items() if s >= 500),
            "slowest": [f"{e['request']['method']} {e['request']['url'].split('/', 3)[-1]} -> {e['response']['status']} "
                        f"in {e['time'] / 1000:.1f} s, {e['request'].get('bodySize', 0)} B" for e in slowest],
            "output": run.stdout[-4000:] if run.returncode else ""}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default=None, help="fuzz a server already running here (else start one)")
    ap.add_argument("--examples", type=int, default=100, help="test cases per operation and phase (schemathesis -n)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2, help="concurrent schemathesis workers")
    ap.add_argument("--max-tokens", type=int, default=4, help="started server: default and limit of max_tokens")
    ap.add_argument("--threads", type=int, default=1, help="started server: torch threads")
    ap.add_argument("--config", default=None, help="started server: settings file (default gate.yaml)")
    ap.add_argument("--json", default=None, help="also write the summary here")
    args = ap.parse_args()
    if args.url:
        result = fuzz(args.url, args.examples, args.seed, args.workers, timeout_s=24 * 3600)
    else:
        from bench_server import server_process

        from gate.config import load_settings
        settings = load_settings(args.config)
        settings.server.ui, settings.server.api_key = False, None
        settings.server.max_tokens_limit = settings.generation.max_tokens = args.max_tokens
        with server_process(settings, args.threads) as base:
            result = fuzz(base, args.examples, args.seed, args.workers, timeout_s=24 * 3600)
            result["health"] = httpx.get(f"{base}/health").json()
    print(result.pop("output"))
    rows = [("model", result["model"]), ("schemathesis exit code", result["exit_code"]),
            ("test cases generated", result["test_cases"]), ("HTTP requests sent", result["requests"]),
            ("responses by status", ", ".join(f"{s}: {n}" for s, n in result["statuses"].items())),
            ("5xx responses", result["server_errors"]),
            ("check failures", sum(f["count"] for f in result["failures"]) if result["failures"] else 0),
            ("errors", len(result["errors"])), ("wall time", f"{result['seconds']:.0f} s"),
            ("slowest requests", "; ".join(result["slowest"]))]
    if "health" in result:
        rows.append(("server /health after", json.dumps(result["health"])))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Set up (first run only, Chromium and the tests' Gemma 3 270M included) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --browser --test-models
exec .venv/bin/python -m pytest "$@"

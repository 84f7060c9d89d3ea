#!/usr/bin/env bash
# Set up (first run only) and start the OpenAI-compatible server with the Gradio view on the default model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/gate serve "$@"

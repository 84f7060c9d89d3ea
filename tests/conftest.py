"""Shared fixtures: the real default model is loaded once per test session."""
from __future__ import annotations

import pytest

from gate.config import Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def engine(settings):
    from gate.engine.runtime import Engine
    return Engine(settings)

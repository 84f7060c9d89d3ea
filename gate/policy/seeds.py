"""Seed texts: what the model is told, in its own voice, about how sure it is and what to do."""
from __future__ import annotations

from gate.config import Seeds
from gate.turns import Decision


def seed_text(seeds: Seeds, decision: Decision, p: float) -> str:
    """The configured text for `decision` with P(knows) as a whole percent."""
    return getattr(seeds, decision).format(pct=round(100 * p))

"""Seed texts: what the model is told, in its own voice, about how sure it is and what to do."""
from __future__ import annotations

from gate.config import Seeds
from gate.turns import Decision


def seed_text(seeds: Seeds, decision: Decision, p: float) -> str | None:
    """The configured text for `decision` with P(knows) as a whole percent; a turn that passes gets none."""
    return None if decision == "pass" else getattr(seeds, decision).format(pct=round(100 * p))

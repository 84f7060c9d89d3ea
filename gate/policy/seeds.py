"""Seed texts: what the model is told, in its own voice, about how sure it is and what to do."""
from __future__ import annotations

from gate.config import Openings, Seeds
from gate.turns import Decision


def seed_text(seeds: Seeds, decision: Decision, p: float) -> str | None:
    """The configured text for `decision` with P(knows) as a whole percent; a turn that passes gets none."""
    return None if decision == "pass" else getattr(seeds, decision).format(pct=round(100 * p))


def opening_text(openings: Openings, decision: Decision | None, has_channel: bool) -> str:
    """What the gate writes before the model's reply for a seeded `decision`: only on a model without a thinking
    channel (where a seed, if any, is a hidden prefill), so that the user sees what a thought would have shown."""
    return "" if has_channel or decision in (None, "pass") else getattr(openings, decision).strip()

"""Bands → decision: the only place a probability becomes answer / hedge / abstain."""
from __future__ import annotations

from pydantic import ValidationError

from gate.config import Bands
from gate.turns import Decision, TurnError


def resolve_bands(configured: Bands, override: tuple[float, float] | None) -> Bands:
    """The bands for one call: a per-call override wins, validated by the same rule as the config."""
    if override is None:
        return configured
    try:
        low, high = override
        return Bands(low=low, high=high)
    except (TypeError, ValueError, ValidationError) as exc:
        msg = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise TurnError(f"invalid bands {override!r}: {msg}", param="bands") from None


def decide(p: float, bands: Bands) -> Decision:
    """p < low → abstain · p < high → hedge · else answer (a p exactly on an edge goes up)."""
    if p < bands.low:
        return "abstain"
    if p < bands.high:
        return "hedge"
    return "answer"

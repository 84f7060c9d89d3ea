"""Bands → decision: the only place a probability becomes answer / hedge / abstain."""
from __future__ import annotations

from pydantic import ValidationError

from gate.config import FACTUAL_THRESHOLD, Bands
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


def resolve_threshold(configured: float, override: float | None) -> float:
    """The applicability threshold for one call: a per-call override wins if it is a probability."""
    if override is None:
        return configured
    if isinstance(override, bool) or not isinstance(override, (int, float)) or not 0.0 <= override <= 1.0:
        raise TurnError(f"factual_threshold must be a number in [0, 1], got {override!r}", param="factual_threshold")
    return float(override)


def decide(p: float, bands: Bands, p_factual: float | None = None,
           factual_threshold: float = FACTUAL_THRESHOLD) -> Decision:
    """Not a knowledge question (p_factual < threshold) → pass; else p < low → abstain · p < high → hedge ·
    else answer (a p exactly on an edge goes up)."""
    if p_factual is not None and p_factual < factual_threshold:
        return "pass"
    if p < bands.low:
        return "abstain"
    if p < bands.high:
        return "hedge"
    return "answer"

"""The one chat-turn contract every adapter uses: what goes in (overrides) and what comes out."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from gate.config import FACTUAL_THRESHOLD

Mode = Literal["off", "seed", "gate"]
Decision = Literal["answer", "hedge", "abstain", "pass"]  # pass: not a knowledge question, generated plainly
Channel = Literal["reasoning", "content"]


class TurnError(ValueError):
    """A request the engine cannot serve as asked; `param` names the offending field."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.param, self.code = param, code


class PromptTooLong(TurnError):
    """The rendered prompt (plus the requested budget) exceeds the model's context window."""


@dataclass
class TurnOverrides:
    """Per-call settings; None means "use the config"."""
    mode: Mode | None = None
    bands: tuple[float, float] | None = None
    factual_threshold: float | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)


@dataclass
class GateView:
    """What the gate read and decided, known before the first generated token."""
    p_knows: float | None          # None when mode is "off" or no sidecar exists for the model
    decision: Decision | None
    mode: Mode
    bands: tuple[float, float]
    seed_text: str | None          # the seed opened in the thinking channel, if any
    probe_ms: float
    note: str | None = None        # why there is no gate reading in a gated mode (e.g. no sidecar for the model)
    p_factual: float | None = None  # P(answering needs stored knowledge of facts); None without an applicability head
    factual_threshold: float = FACTUAL_THRESHOLD  # below it the decision is "pass"
    opening: str = ""              # the reply's first words, written by the gate (policy.openings; no channel only)


@dataclass
class TurnResult:
    gate: GateView
    reasoning: str                 # the model's thought (seed included) when the format has a thinking channel
    content: str                   # the answer shown to the user; never contains a hidden prefill
    finish_reason: Literal["stop", "length", "abstain"]
    prompt_tokens: int
    completion_tokens: int
    first_token_ms: float
    total_ms: float


@dataclass
class Delta:
    """One streamed piece of text."""
    channel: Channel
    text: str


# A stream yields: GateView first, then Delta pieces, then the final TurnResult.
TurnEvent = GateView | Delta | TurnResult

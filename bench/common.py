"""Prompts of a chosen length, shared by the benchmarks."""
from __future__ import annotations

from gate.engine.runtime import Engine

FILLER = ("The history of the region is long and varied, with many kingdoms rising and falling over the "
          "centuries, each leaving its mark on the language, the architecture and the customs of the people. ")


def messages_of(engine: Engine, tokens: int, question: str = "What is the capital city of Australia?") -> list[dict]:
    """One user turn whose served prompt has about `tokens` tokens, ending in `question`."""
    words = FILLER.split()

    def length(n: int) -> int:
        return len(engine.encode([engine.prompt(body(n))])[0][0])

    def body(n: int) -> list[dict]:
        return [{"role": "user", "content": " ".join((words * (1 + n // len(words)))[:n] + [question])}]

    lo, hi = 0, 1
    while length(hi) < tokens:  # grow, then bisect on the number of filler words
        lo, hi = hi, hi * 2
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if length(mid) < tokens else (lo, mid)
    return body(lo)

"""Policy: bands → decision, the seed text that opens the model's thought, and the reply's visible opening."""
from gate.policy.bands import decide, resolve_bands, resolve_threshold
from gate.policy.seeds import opening_text, seed_text

__all__ = ["decide", "opening_text", "resolve_bands", "resolve_threshold", "seed_text"]

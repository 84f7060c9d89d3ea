"""Policy: bands → decision, and the seed text that opens the model's thought."""
from gate.policy.bands import decide, resolve_bands, resolve_threshold
from gate.policy.seeds import seed_text

__all__ = ["decide", "resolve_bands", "resolve_threshold", "seed_text"]

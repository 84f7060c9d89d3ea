"""Logit lens arithmetic: many residual vectors through final norm + unembedding as ONE matrix product."""
from __future__ import annotations

import torch

from gate.engine.arch import ArchMap


def softcap(logits: torch.Tensor, cap: float | None) -> torch.Tensor:
    """Gemma-style final logit soft-capping `c·tanh(x/c)`; identity when the model has none."""
    return logits if not cap else cap * torch.tanh(logits / cap)


def lens_logits(arch: ArchMap, x: torch.Tensor) -> torch.Tensor:
    """Read vectors [..., d] as the model's final layer would: softcap(lm_head(final_norm(x))), float32."""
    return softcap(arch.lm_head(arch.final_norm(x)).float(), arch.softcap)


def distribution_stats(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """Log-probs, probs, entropy, max prob, top-1 margin and argmax of softmax(logits) over the last axis."""
    logp = torch.log_softmax(logits, dim=-1)
    p = logp.exp()
    top = logits.topk(2, dim=-1)                      # same order as p, without another pass over p
    top_p = logp.gather(-1, top.indices).exp()
    return {
        "logp": logp,
        "p": p,
        "entropy": -(p * logp).sum(-1),
        "maxprob": top_p[..., 0],
        "margin": top_p[..., 0] - top_p[..., 1],
        "argmax": top.indices[..., 0],
    }


def top_tokens(arch: ArchMap, resid: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids and probabilities [L, k] of the lens's top-k tokens for residuals [L, d] (the probe view)."""
    top = torch.softmax(lens_logits(arch, resid), -1).topk(k, dim=-1)
    return top.indices, top.values

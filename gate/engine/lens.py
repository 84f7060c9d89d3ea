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


def softmax_entropy(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """softmax(logits) over the last axis with its log-sum-exp, max prob and entropy.

    In few passes over the vocabulary, the lens's main cost after the unembedding: the log-sum-exp from the max
    prob, the entropy as lse − Σ p·x (no [.., V] log-probs)."""
    p = torch.softmax(logits, dim=-1)
    maxprob = p.amax(-1)
    lse = logits.amax(-1) - torch.log(maxprob)
    return {"p": p, "lse": lse, "maxprob": maxprob, "entropy": lse - torch.linalg.vecdot(p, logits)}


def distribution_stats(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """`softmax_entropy` plus the top-1 margin and argmax; the runner-up is the max once the top-1 is masked
    (index-returning top-k is several times slower than a plain max on CPU)."""
    stats = softmax_entropy(logits)
    top, argmax = logits.max(-1)
    at = argmax[..., None]
    logits.scatter_(-1, at, float("-inf"))  # masked in place and restored: no copy of the logits
    second = logits.amax(-1)
    logits.scatter_(-1, at, top[..., None])
    return stats | {"margin": stats["maxprob"] - torch.exp(second - stats["lse"]), "argmax": argmax}


def top_tokens(arch: ArchMap, resid: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids and probabilities [L, k] of the lens's top-k tokens for residuals [L, d] (the probe view)."""
    top = torch.softmax(lens_logits(arch, resid), -1).topk(k, dim=-1)
    return top.indices, top.values

"""One prompt-only forward with hooks: per-layer residual, residual before the MLP, and MLP write.

Only the last `positions` prompt positions are kept (sliced inside the hook, on the model's device), plus, at
the message layers, the residual averaged over each row's latest user message (its token span).
The forward's cache and logits come back too, so the same pass serves as the generation's prefill.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from gate.engine.arch import ArchMap


@dataclass
class Activations:
    """What the features read (engine-independent: the vLLM worker fills the same fields)."""
    resid: torch.Tensor      # [B, L, K, d] layer outputs
    resid_mid: torch.Tensor  # [B, L, K, d] residual just before the MLP
    write: torch.Tensor      # [B, L, K, d] MLP write
    attention_mask: torch.Tensor  # [B, T] 1 on real prompt tokens, left padded
    message: torch.Tensor    # [B, M, d] residual averaged over the latest user message at the message layers


@dataclass
class Capture(Activations):
    logits: torch.Tensor     # [B, K', V] the model's own logits at the last positions
    past_key_values: Any
    position_ids: torch.Tensor


def first_tensor(x: Any) -> torch.Tensor:
    return x[0] if isinstance(x, (tuple, list)) else x


def span_weights(spans: list[tuple[int, int]], attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, T, 1] weights averaging each row's span (token indices of the unpadded prompt) under left padding."""
    B, T = attention_mask.shape
    pad = T - attention_mask.sum(1)
    pos = torch.arange(T, device=attention_mask.device)[None, :]
    lo, hi = (torch.tensor(s, device=attention_mask.device) + pad for s in zip(*spans))
    inside = ((pos >= lo[:, None]) & (pos < hi[:, None])).float()
    return (inside / inside.sum(1, keepdim=True).clamp_min(1))[..., None]


@contextmanager
def hooked(arch: ArchMap, positions: int, message_layers: list[int] = (),
           weights: torch.Tensor | None = None) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Register the capture hooks; always removed on exit, also after an exception. At `message_layers` the
    residual is also averaged with `weights` [B, T, 1] (span_weights) into store["message"], if given."""
    store: dict[str, list[torch.Tensor]] = {"resid": [], "resid_mid": [], "write": [], "message": []}

    def keep(name: str, x: torch.Tensor) -> None:
        store[name].append(x[:, -positions:, :].detach().clone())  # clone: layers may edit in place

    def average(x: torch.Tensor) -> None:
        store["message"].append((x.float() * weights).sum(1).to(x.dtype))

    handles = []
    try:
        for i, (layer, mid, write) in enumerate(zip(arch.layers, arch.resid_mid, arch.write)):
            handles.append(layer.register_forward_hook(lambda m, a, out: keep("resid", first_tensor(out))))
            handles.append(mid.register_forward_pre_hook(lambda m, a: keep("resid_mid", a[0])))
            handles.append(write.register_forward_hook(lambda m, a, out: keep("write", first_tensor(out))))
            if weights is not None and i in message_layers:
                handles.append(layer.register_forward_hook(lambda m, a, out: average(first_tensor(out))))
        yield store
    finally:
        for h in handles:
            h.remove()


def position_ids_for(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that start at 0 on the first real token of each left-padded row."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


@torch.inference_mode()
def capture(model: torch.nn.Module, arch: ArchMap, input_ids: torch.Tensor, attention_mask: torch.Tensor,
            positions: int, message_layers: list[int] = (), spans: list[tuple[int, int]] | None = None) -> Capture:
    """Run the prompt once (left padded) and keep what the lens needs at its last `positions` tokens, and each
    row's latest user message (`spans`, in unpadded token indices) averaged at `message_layers`."""
    position_ids = position_ids_for(attention_mask)
    weights = span_weights(spans, attention_mask) if spans and message_layers else None
    with hooked(arch, positions, message_layers, weights) as store:
        out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                    use_cache=True, logits_to_keep=positions)
    B, d = input_ids.shape[0], arch.hidden_size
    stacked = {k: torch.stack(v, dim=1) if v else input_ids.new_zeros((B, 0, d), dtype=model.dtype)
               for k, v in store.items()}
    return Capture(**stacked, logits=out.logits, past_key_values=out.past_key_values,
                   attention_mask=attention_mask, position_ids=position_ids)

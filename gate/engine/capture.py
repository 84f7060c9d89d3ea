"""One prompt-only forward with hooks: per-layer residual, residual before the MLP, and MLP write.

Only the last `positions` prompt positions are kept (sliced inside the hook, on the model's device).
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


@dataclass
class Capture(Activations):
    logits: torch.Tensor     # [B, K', V] the model's own logits at the last positions
    past_key_values: Any
    position_ids: torch.Tensor


def first_tensor(x: Any) -> torch.Tensor:
    return x[0] if isinstance(x, (tuple, list)) else x


@contextmanager
def hooked(arch: ArchMap, positions: int) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Register the capture hooks; always removed on exit, also after an exception."""
    store: dict[str, list[torch.Tensor]] = {"resid": [], "resid_mid": [], "write": []}

    def keep(name: str, x: torch.Tensor) -> None:
        store[name].append(x[:, -positions:, :].detach().clone())  # clone: layers may edit in place

    handles = []
    try:
        for layer, mid, write in zip(arch.layers, arch.resid_mid, arch.write):
            handles.append(layer.register_forward_hook(lambda m, a, out: keep("resid", first_tensor(out))))
            handles.append(mid.register_forward_pre_hook(lambda m, a: keep("resid_mid", a[0])))
            handles.append(write.register_forward_hook(lambda m, a, out: keep("write", first_tensor(out))))
        yield store
    finally:
        for h in handles:
            h.remove()


def position_ids_for(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that start at 0 on the first real token of each left-padded row."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


@torch.inference_mode()
def capture(model: torch.nn.Module, arch: ArchMap, input_ids: torch.Tensor, attention_mask: torch.Tensor,
            positions: int) -> Capture:
    """Run the prompt once (left padded) and keep what the lens needs at its last `positions` tokens."""
    position_ids = position_ids_for(attention_mask)
    with hooked(arch, positions) as store:
        out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                    use_cache=True, logits_to_keep=positions)
    stacked = {k: torch.stack(v, dim=1) for k, v in store.items()}
    return Capture(**stacked, logits=out.logits, past_key_values=out.past_key_values,
                   attention_mask=attention_mask, position_ids=position_ids)

"""Decoding that continues from the probe's KV cache: the probe forward IS the prefill."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch

from gate.engine.capture import Capture, position_ids_for


@dataclass
class SamplingParams:
    max_tokens: int = 256
    temperature: float = 0.0      # 0 = greedy
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)


@dataclass
class Prefill:
    """What decoding needs from a prompt forward; a probe's Capture carries the same fields."""
    logits: torch.Tensor          # [B, K, V], the last position's row is used
    past_key_values: Any
    attention_mask: torch.Tensor
    position_ids: torch.Tensor


@torch.inference_mode()
def prefill(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Prefill:
    """A plain prompt forward without hooks or features: the baseline the probe is measured against."""
    position_ids = position_ids_for(attention_mask)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                use_cache=True, logits_to_keep=1)
    return Prefill(out.logits, out.past_key_values, attention_mask, position_ids)


def stop_token_ids(tokenizer, stop_tokens: Sequence[str]) -> list[int]:
    """EOS ids of the model plus those of the profile's end-of-turn markers that are tokens of this tokenizer."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    for tok in stop_tokens:
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid >= 0:
            ids.add(tid)
    return sorted(ids)


def pick(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> torch.Tensor:
    """Next token per row: argmax when greedy, else temperature + nucleus sampling."""
    if params.temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_p, idx = probs.sort(dim=-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < params.top_p
        keep[..., 0] = True  # the top token always stays: a top_p below float32's resolution rounds to 0
        probs = torch.zeros_like(probs).scatter(-1, idx, sorted_p * keep)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.inference_mode()
def continue_tokens(model: torch.nn.Module, cap: Capture | Prefill, params: SamplingParams, eos_ids: list[int],
                    extra_ids: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
    """Yield next-token ids [B] step by step from the probe's (or a plain prefill's) cache, after `extra_ids` [B, S].

    Rows that finished keep yielding their EOS id; the iterator ends when every row has stopped or
    `max_tokens` were produced. Closing the iterator early frees the engine at once.
    """
    cache, mask = cap.past_key_values, cap.attention_mask
    pos = cap.position_ids[:, -1]
    logits = cap.logits[:, -1]
    if extra_ids is not None and extra_ids.shape[1] > 0:
        S = extra_ids.shape[1]
        positions = pos[:, None] + torch.arange(1, S + 1, device=pos.device)
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], S)], dim=1)
        logits = model(input_ids=extra_ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                       use_cache=True, logits_to_keep=1).logits[:, -1]
        pos = positions[:, -1]
    generator = None
    if params.seed is not None:
        generator = torch.Generator(device=logits.device).manual_seed(params.seed)
    eos = torch.tensor(eos_ids, dtype=torch.long, device=logits.device)
    done = torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
    for step in range(params.max_tokens):
        tok = pick(logits, params, generator)
        if eos.numel():  # no EOS ids: a fixed-length run (benchmarks)
            tok = torch.where(done, eos[0], tok)
        yield tok
        done |= torch.isin(tok, eos)
        if bool(done.all()) or step + 1 == params.max_tokens:
            return
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        pos = pos + 1
        logits = model(input_ids=tok[:, None], attention_mask=mask, position_ids=pos[:, None],
                       past_key_values=cache, use_cache=True).logits[:, -1]


def generate_batch(model: torch.nn.Module, tokenizer, cap: Capture, params: SamplingParams,
                   eos_ids: list[int]) -> list[str]:
    """Whole replies for a left-padded batch, cut at each row's first stop token (batched dataset builds)."""
    steps = list(continue_tokens(model, cap, params, eos_ids))
    if not steps:
        return [""] * cap.attention_mask.shape[0]
    ids = torch.stack(steps, dim=1).tolist()
    out = []
    for row in ids:
        cut = next((i for i, t in enumerate(row) if t in eos_ids), len(row))
        out.append(tokenizer.decode(row[:cut], skip_special_tokens=True))
    return out

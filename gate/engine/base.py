"""The engine interface the pipeline talks to, and the one factory that picks an implementation.

A turn asks its engine to read the prompt (with the gate's hooks, or plainly in `off` mode) and then to
continue it after the seed. Two implementations: `runtime.Engine` (transformers: hooks + DynamicCache, one
turn at a time) and `vllm_engine.VllmEngine` (hooks inside vLLM's worker during vLLM's own prefill; the probe
is a streaming-input session that samples the reply's first token and then takes the turn's next input, that
token or the seed, on the prompt's KV; many turns at once).
"""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Iterator

import torch
from transformers import PreTrainedTokenizerBase

from gate.config import FeatureSettings, Settings
from gate.engine.chat import ThinkingFormat, message_span, render_prompt, seed_opening
from gate.engine.features import Features
from gate.engine.generate import SamplingParams
from gate.models import Profile

# model.engine → "module:class"; imported on demand, so the transformers path never imports vLLM.
ENGINES = {"transformers": "gate.engine.runtime:Engine", "vllm": "gate.engine.vllm_engine:VllmEngine"}

LensTop = list[list[tuple[int, float]]]  # per layer: (token id, probability) of the lens at the final position
Span = tuple[int, int]  # [start, end) token indices of the latest user message in a prompt (chat.message_span)


def as_lens_top(ids, probs) -> LensTop:
    """Lens top-k as plain lists, from arrays [L, k] of ids and probabilities (torch or numpy)."""
    return [list(zip(i, p)) for i, p in zip(ids.tolist(), probs.tolist())]


@dataclass(frozen=True)
class ModelShape:
    """What a sidecar checkpoint must match, and what the views show: read from the model's config."""
    family: str
    num_layers: int
    hidden_size: int
    vocab_size: int


class ReadPrompt(ABC):
    """A prompt the engine has read: the gate's features (None when read without hooks), and its continuation."""
    features: Features | None
    lens: LensTop | None  # only when asked for (the probe view)

    @abstractmethod
    def tokens(self, extra_ids: list[int], params: SamplingParams) -> Iterator[int]:
        """Append `extra_ids` (the seed) and yield generated token ids; closing the iterator stops at once."""

    def close(self) -> None:
        """Drop what the read started and the turn did not take (vLLM: a plain continuation, for a seeded or
        abstained turn)."""


class TurnEngine(ABC):
    """A loaded model that reads prompts and continues them; subclasses set the attributes in __init__."""
    settings: Settings
    profile: Profile                   # the model's system prompt, stop tokens, thinking format (gate/models.py)
    tokenizer: PreTrainedTokenizerBase
    thinking: ThinkingFormat
    model_id: str
    shape: ModelShape
    device: torch.device
    dtype: torch.dtype
    context_window: int
    eos_ids: list[int]
    features: FeatureSettings          # what the probe computes (settings.features, the profile filling the gaps)
    turn_lock: AbstractContextManager  # held by a turn from its prompt read to its last token
    max_turns: int                     # turns the engine serves at once; the server queues the rest

    def prompt(self, messages: list[dict], **template_kwargs) -> str:
        """The prompt as served: the profile's pinned system prompt, thinking enabled where the model has a channel."""
        kwargs = {**self.thinking.template_kwargs, **template_kwargs}
        return render_prompt(self.tokenizer, messages, self.profile.system_prompt, **kwargs)

    def tokens(self, text: str) -> list[int]:
        """One text, never padded: a fast tokenizer whose padding state never changes is safe across threads."""
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def seed_ids(self, prompt: str, seed: str) -> list[int]:
        """The tokens a seed appends after `prompt`: its opening, then what the model always writes next
        (`profile.after_seed`), tokenised apart so that it stays the token the model itself would write."""
        tail = self.tokens(self.profile.after_seed) if self.profile.after_seed else []
        return self.tokens(seed_opening(prompt, self.thinking, seed)) + tail

    def tokens_and_span(self, prompt: str, messages: list[dict]) -> tuple[list[int], Span]:
        """`tokens(prompt)` and where the latest user message lies in them (the message read averages over it),
        from one tokenisation."""
        enc = self.tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
        ids = enc["input_ids"]
        return ids, message_span(prompt, messages, enc["offset_mapping"]) or self.tail_span(len(ids))

    def span(self, prompt: str, messages: list[dict]) -> Span:
        return self.tokens_and_span(prompt, messages)[1]

    def tail_span(self, n: int) -> Span:
        """The span read when a prompt has no user message of its own: its last `positions` tokens."""
        return max(0, n - self.features.positions), n

    @abstractmethod
    def read(self, ids: list[int], probe: bool, lens_top: int = 0, span: Span | None = None,
             params: SamplingParams | None = None) -> ReadPrompt:
        """Read a prompt: with `probe`, its features (and the lens's top `lens_top` tokens per layer); `span`
        is its latest user message (`span()`; None: the prompt's tail). `params`: the turn's sampling when it
        will generate, so an engine may sample the reply's first token in the probe (`tokens([], params)` takes
        it: a turn that passes then gets its first token as soon as its decision is made). A read with `params`
        must be closed (`close`), whatever the turn did with it."""

    @abstractmethod
    def weight_bytes(self) -> int:
        """Bytes of the loaded weights (the Info view)."""

    def close(self) -> None:
        """Free what the engine holds outside this process (nothing for an in-process model)."""


def load_engine(settings: Settings) -> TurnEngine:
    """The engine named by `model.engine`, loaded with these settings."""
    module, name = ENGINES[settings.model.engine].split(":")
    return getattr(importlib.import_module(module), name)(settings)

"""The transformers engine: a loaded model with its architecture map, reading prompts with hooks in this
process and continuing them from the same forward's KV cache. One model instance serves one turn at a time."""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Iterator

import torch

from gate.config import Settings
from gate.engine.arch import ArchMap, arch_map
from gate.engine.base import LensTop, ModelShape, ReadPrompt, Span, TurnEngine, as_lens_top
from gate.engine.capture import Capture, capture
from gate.engine.chat import thinking_format
from gate.engine.features import Features, LazyFeatures, compute_features, hidden_layer_indices, residual_features
from gate.engine.generate import Prefill, SamplingParams, continue_tokens, prefill, stop_token_ids
from gate.engine.lens import top_tokens
from gate.engine.loading import LoadedModel, load_model
from gate.models import Profile, features_for, profile_for


@dataclass
class Probe:
    capture: Capture
    features: Features
    input_ids: torch.Tensor


class _Read(ReadPrompt):
    """The prompt's forward (probe or plain prefill); decoding continues from its cache."""

    def __init__(self, engine: "Engine", state: Capture | Prefill, features: Features | None,
                 lens: LensTop | None):
        self.engine, self.state, self.features, self.lens = engine, state, features, lens

    def tokens(self, extra_ids: list[int], params: SamplingParams) -> Iterator[int]:
        engine = self.engine
        extra = torch.tensor([extra_ids], dtype=torch.long, device=engine.device)
        with contextlib.closing(continue_tokens(engine.model, self.state, params, engine.eos_ids, extra)) as steps:
            for tok in steps:
                yield int(tok[0])


class Engine(TurnEngine):
    def __init__(self, settings: Settings, loaded: LoadedModel | None = None):
        self.settings = settings
        self.loaded = loaded or load_model(settings.model)
        self.model, self.tokenizer = self.loaded.model, self.loaded.tokenizer
        self.arch: ArchMap = arch_map(self.model)
        self.profile: Profile = profile_for(settings.model)
        self.features = features_for(settings.features, settings.model)
        self.thinking = thinking_format(self.tokenizer, self.profile.thinking)
        self.model_id, self.device, self.dtype = self.loaded.model_id, self.loaded.device, self.loaded.dtype
        self.shape = ModelShape(self.arch.family, self.arch.num_layers, self.arch.hidden_size, self.arch.vocab_size)
        text_config = self.model.config.get_text_config()
        self.context_window = getattr(text_config, "max_position_embeddings", None) or 2 ** 31
        self.eos_ids = stop_token_ids(self.tokenizer, self.profile.stop_tokens)
        self.turn_lock, self.max_turns = threading.Lock(), 1

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded ids and mask; templated text already carries its special tokens."""
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        return enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)

    def capture_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, spans: list[Span]) -> Capture:
        fs = self.features
        return capture(self.model, self.arch, input_ids, attention_mask, fs.positions,
                       hidden_layer_indices(self.arch.num_layers, fs.message_depths), spans)

    def probe_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, spans: list[Span]) -> Probe:
        cap = self.capture_ids(input_ids, attention_mask, spans)
        return Probe(cap, compute_features(self.arch, cap, self.features), input_ids)

    def probe(self, texts: list[str], spans: list[Span] | None = None) -> Probe:
        """One prompt-only forward over a batch of prompt texts, each with its latest user message's token span
        (`span()`; None: every prompt's tail): the prefill, plus features."""
        ids, mask = self.encode(texts)
        return self.probe_ids(ids, mask, spans or [self.tail_span(int(n)) for n in mask.sum(1)])

    def probe_chats(self, conversations: list[list[dict]]) -> Probe:
        """`probe` on conversations (message lists), templated as served."""
        prompts = [self.prompt(c) for c in conversations]
        return self.probe(prompts, [self.span(p, c) for p, c in zip(prompts, conversations)])

    @torch.inference_mode()
    def read(self, ids: list[int], probe: bool, lens_top: int = 0, span: Span | None = None,
             params: SamplingParams | None = None) -> ReadPrompt:
        """The probe is the prefill: any continuation starts from its cache, so `params` is not needed here.
        The lens trajectory is computed only if a head reads it (LazyFeatures)."""
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)
        mask = torch.ones_like(input_ids)
        if not probe:
            return _Read(self, prefill(self.model, input_ids, mask), None, None)
        cap = self.capture_ids(input_ids, mask, [span or self.tail_span(len(ids))])
        features = LazyFeatures(*residual_features(cap, self.features),
                                lambda: compute_features(self.arch, cap, self.features))
        lens = as_lens_top(*top_tokens(self.arch, cap.resid[0, :, -1], lens_top)) if lens_top else None
        return _Read(self, cap, features, lens)

    def weight_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters())

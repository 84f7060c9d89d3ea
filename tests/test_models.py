"""Known models and their profiles, `dtype: auto`, the install steps' checks, and `gate models`."""
from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
import torch

from gate.config import ModelSettings, Settings
from gate.engine import install, loading
from gate.models import DEFAULT_MODEL, MODELS, GENERIC_STOPS, Weights, known, profile_for


def test_known_by_name_or_hub_alias_in_any_case():
    assert known("smollm2-135m-instruct") is MODELS[DEFAULT_MODEL]
    assert known("Qwen/Qwen2.5-Coder-1.5B-Instruct").name == "qwen2.5-coder-1.5b-instruct"
    assert known("QWEN2.5-CODER-1.5B-INSTRUCT").name == "qwen2.5-coder-1.5b-instruct"
    assert known("someone/some-model") is None


def test_switching_model_id_does_not_carry_smollm_profile():
    smol = profile_for(Settings().model)
    assert smol.system_prompt.startswith("You are a helpful AI assistant named SmolLM")
    qwen = profile_for(ModelSettings(id="qwen2.5-coder-1.5b-instruct"))
    assert qwen.system_prompt.startswith("You are Qwen") and qwen.thinking == "prefill"
    other = profile_for(ModelSettings(id="someone/some-model"))
    assert other.system_prompt is None and other.stop_tokens == GENERIC_STOPS  # the template's own defaults


def test_yaml_values_override_the_profile(tmp_path):
    from gate.config import load_settings
    path = tmp_path / "g.yaml"
    path.write_text("model:\n  id: qwen2.5-coder-1.5b-instruct\n  system_prompt: Be brief.\n"
                    "  stop_tokens: ['<|im_end|>']\n  thinking: think\n  dtype: float32\n  after_seed: ' '\n")
    p = profile_for(load_settings(path).model)
    assert (p.system_prompt, p.stop_tokens, p.thinking, p.dtype, p.after_seed) == (
        "Be brief.", ("<|im_end|>",), "think", "float32", " ")
    path.write_text("model:\n  after_seed: ''\n")  # "" turns the default model's off
    assert profile_for(load_settings(path).model).after_seed == ""
    assert profile_for(ModelSettings()).after_seed == "\n" and profile_for(ModelSettings(id="x/y")).after_seed == ""


def test_shipped_yaml_leaves_the_system_prompt_to_the_profile():
    from gate.config import load_settings
    assert load_settings().model.system_prompt is None


def test_engine_pins_the_profile_system_prompt(engine):
    prompt = engine.prompt([{"role": "user", "content": "Hi"}])
    assert profile_for(engine.settings.model).system_prompt in prompt
    assert engine.tokenizer.convert_tokens_to_ids("<|im_end|>") in engine.eos_ids


@pytest.mark.parametrize("native, device, expected", [
    (True, "cpu", torch.bfloat16), (False, "cpu", torch.float32), (False, "mps", torch.bfloat16)])
def test_dtype_auto_follows_native_bf16(monkeypatch, native, device, expected):
    monkeypatch.setattr(loading, "native_bf16_cpu", lambda: native)
    assert loading.resolve_dtype("auto", torch.device(device)) == expected
    assert loading.resolve_dtype("float16", torch.device(device)) == torch.float16


def test_native_bf16_detection_agrees_with_cpu_flags():
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    flags = {w for line in text.splitlines() if line.startswith(("flags", "Features")) for w in line.split()}
    assert loading.native_bf16_cpu() == bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def _fake_model(tmp_path, chunks: list[bytes], sha: str | None = None):
    """A known model whose parts are files in tmp_path (no packages involved)."""
    paths = []
    for i, data in enumerate(chunks):
        paths.append(tmp_path / f"part{i:02d}.bin")
        paths[-1].write_bytes(data)
    whole = b"".join(chunks)
    weights = Weights(("fake==1",), tuple(("fake", p.name) for p in paths), len(whole),
                      sha or hashlib.sha256(whole).hexdigest())
    return replace(MODELS["gemma-3-270m"], name="fake", weights=weights), paths


def test_parts_are_assembled_in_order_and_checked(tmp_path):
    model, parts = _fake_model(tmp_path, [b"abc" * 1000, b"defg" * 999, b"h"])
    out = install.verified_gguf(model, parts, tmp_path / "downloads")
    assert out.read_bytes() == b"abc" * 1000 + b"defg" * 999 + b"h"


def test_a_wrong_sha256_is_refused_and_leaves_nothing(tmp_path):
    model, parts = _fake_model(tmp_path, [b"abc", b"def"], sha="0" * 64)
    with pytest.raises(install.InstallError, match="sha256"):
        install.verified_gguf(model, parts, tmp_path / "downloads")
    assert not any((tmp_path / "downloads").iterdir())


def test_parts_of_a_missing_package_are_not_found():
    model = replace(MODELS["gemma-3-270m"], weights=replace(MODELS["gemma-3-270m"].weights,
                                                             parts=(("no_such_module_xyz", "f"),)))
    assert install.part_paths(model) is None


def test_gate_models_lists_every_known_model(capsys):
    from gate.cli import main
    main(["models"])
    out = capsys.readouterr().out
    for m in MODELS.values():
        assert m.name in out and m.licence in out
    assert "smollm2-135m-instruct *" in out  # the configured one is marked

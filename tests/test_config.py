"""Settings: defaults, YAML loading, and errors that name the offending key."""
from __future__ import annotations

import pytest

from gate.config import ConfigError, load_settings


def test_shipped_yaml_loads_with_default_bands():
    s = load_settings()
    assert (s.policy.bands.low, s.policy.bands.high) == (0.4, 0.7)
    assert s.model.id == "smollm2-135m-instruct" and s.server.host == "127.0.0.1"


@pytest.mark.parametrize("yaml_text, key", [
    ("policy:\n  bands: {low: 0.8, high: 0.3}\n", "policy.bands"),
    ("server:\n  port: 99999\n", "server.port"),
    ("model:\n  device: tpu\n", "model.device"),
    ("features:\n  recall_band: [0.9, 0.2]\n", "features.recall_band"),
    ("featurez: {}\n", "featurez"),
    ("server:\n  max_body_bytes: 10\n", "server.max_body_bytes"),
    ("generation:\n  max_tokens: 5000\n", "generation.max_tokens"),  # above server.max_tokens_limit
    ("model:\n  engine: tgi\n", "model.engine"),
    ("vllm:\n  engine_args: {enforce_eager: false}\n", "vllm.engine_args"),
])
def test_invalid_values_name_the_key(tmp_path, yaml_text, key):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_settings(path)


def test_env_var_selects_the_file(tmp_path, monkeypatch):
    path = tmp_path / "g.yaml"
    path.write_text("server:\n  port: 9123\n")
    monkeypatch.setenv("GATE_CONFIG", str(path))
    assert load_settings().server.port == 9123
    monkeypatch.setenv("GATE_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="not found"):
        load_settings()


def test_vllm_engine_arguments_pass_through_and_owned_ones_are_named(tmp_path):
    path = tmp_path / "v.yaml"
    path.write_text("model:\n  engine: vllm\nvllm:\n  engine_args: {tensor_parallel_size: 2, max_model_len: 4096}\n")
    s = load_settings(path)
    assert s.model.engine == "vllm" and s.vllm.engine_args == {"tensor_parallel_size": 2, "max_model_len": 4096}
    path.write_text("vllm:\n  engine_args: {dtype: float16, block_size: 16}\n")
    with pytest.raises(ConfigError, match=r"dtype \(model\.dtype\).*block_size \(vllm\.block_size\)"):
        load_settings(path)

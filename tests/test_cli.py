"""The `gate` command: help, config errors, and `gate probe` on the real default model."""
from __future__ import annotations

import pytest

from gate.cli import build_parser, main


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    assert all(cmd in out for cmd in ("probe", "serve", "ui", "config", "models"))


def test_bad_config_exits_with_message(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("policy:\n  bands: {low: 2}\n")
    with pytest.raises(SystemExit, match="policy.bands"):
        main(["--config", str(bad), "config"])


def test_config_prints_valid_yaml_and_the_model_profile(tmp_path, capsys):
    import yaml

    from gate.config import load_settings
    path = tmp_path / "q.yaml"
    path.write_text("model:\n  id: qwen2.5-coder-1.5b-instruct\n")
    main(["--config", str(path), "config"])
    out = capsys.readouterr().out
    profile = yaml.safe_load("\n".join(line[4:] for line in out.splitlines() if line.startswith("#   ")))
    assert profile["system_prompt"] == "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    assert profile["after_seed"] == "" and profile["stop_tokens"] == ["<|im_end|>", "<|endoftext|>"]
    (tmp_path / "again.yaml").write_text(out)
    assert load_settings(tmp_path / "again.yaml").model.id == "qwen2.5-coder-1.5b-instruct"
    assert yaml.safe_load(out)["model"]["system_prompt"] is None


def test_model_option_picks_the_model_and_its_profile(capsys):
    """`gate --model NAME` switches model.id for one run, profile included, without editing the config."""
    import yaml
    main(["--model", "qwen2.5-coder-1.5b-instruct", "config"])
    out = capsys.readouterr().out
    assert yaml.safe_load(out)["model"]["id"] == "qwen2.5-coder-1.5b-instruct"
    assert "You are Qwen" in out
    main(["--model", "smollm2-135m-instruct", "config"])
    assert '#   after_seed: "\\n"' in capsys.readouterr().out  # a newline shown escaped, on one line


def test_probe_prints_every_layer(capsys, engine, monkeypatch):
    import gate.pipeline
    monkeypatch.setattr(gate.pipeline, "load_engine", lambda settings: engine)  # reuse the session's loaded model
    main(["probe", "What is the capital of France?"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == engine.model.config.num_hidden_layers
    assert "P(knows)" in out


def test_probe_judges_the_question_in_its_conversation(capsys, engine, monkeypatch):
    """`--after USER REPLY` puts earlier exchanges before the question, as the server's conversation does: the prompt
    grows by them, the reading is not the question's alone, and a knowledge follow-up ("And Germany?") is gated."""
    import gate.pipeline
    monkeypatch.setattr(gate.pipeline, "load_engine", lambda settings: engine)
    main(["probe", "And Germany?"])
    alone = capsys.readouterr().out
    main(["probe", "--after", "What is the capital of France?", "The capital of France is Paris.", "And Germany?"])
    out = capsys.readouterr().out
    tokens = [int(o.split(" prompt tokens")[0].split("· ")[-1]) for o in (alone, out)]
    assert "1 earlier exchange ·" in out and tokens[1] > tokens[0] + 10
    p_factual = [float(o.split("P(factual) = ")[1].split()[0]) for o in (alone, out)]
    assert abs(p_factual[1] - p_factual[0]) > 1e-3, (alone, out)
    assert "→ a knowledge question" in out, out

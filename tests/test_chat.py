"""Chat formats and the thinking channel: Gemma 4 on a tiny random model, Qwen3/R1 `<think>`, hidden prefill.

No hub: the tokenizers are byte-level, built here with the special tokens of each family and a chat
template written in that family's style.
"""
from dataclasses import replace

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import Gemma4ForCausalLM, Gemma4TextConfig, PreTrainedTokenizerFast

import gate.engine.runtime
from gate.config import Openings, Settings
from gate.engine.chat import opens_thought, seed_opening, thinking_format
from gate.engine.loading import LoadedModel
from gate.engine.reply import ReplySplitter
from gate.engine.runtime import Engine
from gate.pipeline import Gate
from gate.turns import Delta, TurnOverrides
from conftest import FixedSidecar

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]

GEMMA4_TEMPLATE = (
    "{{ bos_token }}"
    "{% if enable_thinking or messages[0]['role'] == 'system' %}"
    "{{ '<|turn>system\\n' }}{% if enable_thinking %}{{ '<|think|>' }}{% endif %}"
    "{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}{% endif %}{{ '<turn|>\\n' }}"
    "{% endif %}"
    "{% for m in messages if m['role'] != 'system' %}"
    "{{ '<|turn>' + ('model' if m['role'] == 'assistant' else m['role']) + '\\n' + m['content'] + '<turn|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|turn>model\\n' }}{% endif %}"
)
CHATML_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% if open_think %}{{ '<think>\\n' }}{% endif %}"
    "{% endif %}"
)
GEMMA4_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<|turn>", "<turn|>", "<|channel>", "<channel|>", "<|think|>"]
QWEN3_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]


def byte_tokenizer(specials: list[str], template: str) -> PreTrainedTokenizerFast:
    """One token per byte plus whole special tokens: exact round trips, tiny vocabulary."""
    vocab = {t: i for i, t in enumerate(specials + sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=specials[0]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(specials)
    named = {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"} if "<bos>" in specials else \
        {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    return PreTrainedTokenizerFast(tokenizer_object=tok, chat_template=template, padding_side="left", **named)


@pytest.fixture(scope="module")
def gemma4_engine() -> Engine:
    tok = byte_tokenizer(GEMMA4_SPECIALS, GEMMA4_TEMPLATE)
    config = Gemma4TextConfig(
        vocab_size=len(tok), vocab_size_per_layer_input=len(tok), hidden_size=64, intermediate_size=128,
        num_hidden_layers=3, layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, global_head_dim=32, hidden_size_per_layer_input=8,
        final_logit_softcapping=30.0, sliding_window=16, max_position_embeddings=1024,
        pad_token_id=0, eos_token_id=1, bos_token_id=2)
    torch.manual_seed(0)
    model = Gemma4ForCausalLM(config).eval()
    settings = Settings.model_validate({"model": {"id": "tiny-gemma4", "device": "cpu", "system_prompt": None}})
    return Engine(settings, LoadedModel(model, tok, "tiny-gemma4", torch.device("cpu"), torch.float32))


def split(tok, fmt, text: str, in_thought: bool = False, stop=()) -> tuple[str, str]:
    splitter = ReplySplitter(tok, fmt, in_thought, list(stop))
    for i in tok(text, add_special_tokens=False)["input_ids"]:
        splitter.push(i)
    splitter.finish()
    return splitter.text["reasoning"], splitter.text["content"]


def test_gemma4_prompt_enables_thinking_and_seed_opens_the_thought(gemma4_engine):
    fmt = gemma4_engine.thinking
    assert fmt.name == "gemma4"
    prompt = gemma4_engine.prompt(QUESTION)
    assert prompt == ("<bos><|turn>system\n<|think|><turn|>\n<|turn>user\nWhat is the capital of France?<turn|>\n"
                      "<|turn>model\n")
    assert seed_opening(prompt, fmt, "Sure.") == "<|channel>thought\nSure."


def test_gemma4_reply_splits_thought_from_answer(gemma4_engine):
    tok, fmt = gemma4_engine.tokenizer, gemma4_engine.thinking
    assert split(tok, fmt, "<|channel>thought\nIt is Paris.<channel|>Paris.") == ("It is Paris.", "Paris.")
    assert split(tok, fmt, "Seeded, continued.<channel|>\nParis é 🙂", in_thought=True) == \
        ("Seeded, continued.", "Paris é 🙂")
    assert split(tok, fmt, "Paris. Next<|turn>more", stop=["Next"]) == ("", "Paris. ")  # as OpenAI: not stripped


def test_gemma4_seeded_turn_continues_inside_the_thought(gemma4_engine, monkeypatch):
    seen = {}
    real = gate.engine.runtime.continue_tokens

    def spy(model, cap, params, eos_ids, extra_ids=None):
        seen["extra"] = gemma4_engine.tokenizer.decode(extra_ids[0])
        yield from real(model, cap, params, eos_ids, extra_ids)

    monkeypatch.setattr(gate.engine.runtime, "continue_tokens", spy)
    g = Gate(gemma4_engine.settings, engine=gemma4_engine, sidecar=FixedSidecar(0.55))
    result = g.chat(QUESTION, TurnOverrides(mode="seed", max_tokens=6))
    seed = result.gate.seed_text
    assert result.gate.decision == "hedge" and "55%" in seed and result.gate.opening == ""  # the thought says it
    assert seen["extra"] == "<|channel>thought\n" + seed
    assert result.reasoning.startswith(seed) and seed not in result.content
    assert result.completion_tokens <= 6
    assert result.prompt_tokens == gemma4_engine.encode([gemma4_engine.prompt(QUESTION)])[0].shape[1]


def test_think_format_detected_and_split():
    tok = byte_tokenizer(QWEN3_SPECIALS, CHATML_TEMPLATE)
    fmt = thinking_format(tok)
    assert fmt.name == "think"
    plain = tok.apply_chat_template(QUESTION, tokenize=False, add_generation_prompt=True)
    opened = tok.apply_chat_template(QUESTION, tokenize=False, add_generation_prompt=True, open_think=True)
    assert seed_opening(plain, fmt, "Sure.") == "<think>\nSure."
    assert opens_thought(opened, fmt) and seed_opening(opened, fmt, "Sure.") == "Sure."  # R1-style template
    assert split(tok, fmt, "<think>\nLet me see.</think>\n\nParis.") == ("Let me see.", "Paris.")


def test_prefill_format_for_models_without_a_channel(engine):
    assert engine.thinking.name == "prefill"
    with pytest.raises(ValueError, match="model.thinking"):
        thinking_format(engine.tokenizer, "gemma4")


def test_hidden_prefill_never_shows_in_content(make_gate):
    result = make_gate(0.2).chat(QUESTION, TurnOverrides(mode="seed", max_tokens=12))
    assert result.gate.decision == "abstain" and result.gate.seed_text
    assert result.reasoning == "" and result.content and result.gate.seed_text not in result.content
    assert "P(knows)" not in result.content


def test_a_profile_seeds_only_the_decisions_it_follows(make_gate, engine, monkeypatch):
    """SmolLM2's profile writes no hidden seed for answer and hedge (under one it loses answers): the reply is the
    plain one; the config can turn them back on (model.prefill_seeds)."""
    assert engine.profile.prefill_seeds == ("abstain",)
    sure = make_gate(0.9).chat(QUESTION, TurnOverrides(mode="seed", max_tokens=12))
    plain = make_gate(0.9).chat(QUESTION, TurnOverrides(mode="off", max_tokens=12))
    assert sure.gate.decision == "answer" and sure.gate.seed_text is None and sure.content == plain.content
    monkeypatch.setattr(engine, "profile", replace(engine.profile, prefill_seeds=("answer", "hedge", "abstain")))
    seeded = make_gate(0.9).chat(QUESTION, TurnOverrides(mode="seed", max_tokens=12))
    assert seeded.gate.seed_text and "90%" in seeded.gate.seed_text


def test_a_hidden_hedge_is_said_before_the_models_own_reply(make_gate):
    """Without a thinking channel the hedge opening (policy.openings) is written first, streamed before any
    generated token; the model never reads it, so what follows is the reply it gives without one."""
    hedge = make_gate(0.55).stream(QUESTION, TurnOverrides(mode="seed", max_tokens=12))
    view, first, *rest = list(hedge)
    result, opening = rest[-1], "I'm not certain about this."
    assert view.decision == "hedge" and view.opening == opening and first == Delta("content", opening)
    plain = make_gate(0.55, openings=Openings(hedge="")).chat(QUESTION, TurnOverrides(mode="seed", max_tokens=12))
    assert plain.gate.opening == "" and plain.content and result.content == f"{opening} {plain.content}"
    assert result.completion_tokens == plain.completion_tokens
    assert make_gate(0.9).probe(QUESTION).gate.opening == ""  # answer: nothing written by default
    cut = make_gate(0.55).chat(QUESTION, TurnOverrides(mode="seed", max_tokens=12, stop=["certain"]))
    assert cut.content == "I'm not " and cut.completion_tokens == 0 and cut.finish_reason == "stop"
    words = plain.content.split()
    across = make_gate(0.55).chat(QUESTION, TurnOverrides(mode="seed", max_tokens=12, stop=[f"this. {words[0]}"]))
    assert across.content == "I'm not certain about " and across.finish_reason == "stop"  # a stop across the join


def test_gate_mode_abstains_without_generating(make_gate, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("generation must not run when the gate abstains")

    monkeypatch.setattr(gate.engine.runtime, "continue_tokens", never)
    g = make_gate(0.39)
    result = g.chat(QUESTION, TurnOverrides(mode="gate"))
    assert result.content == g.settings.policy.abstention and result.finish_reason == "abstain"
    assert result.completion_tokens == 0 and result.gate.decision == "abstain"
    assert result.gate.p_knows == pytest.approx(0.39)


def test_no_sidecar_is_said_not_hidden(make_gate):
    view = make_gate(None).probe(QUESTION).gate
    assert view.p_knows is None and view.decision is None and "no sidecar" in view.note


def test_probe_report_reads_every_layer(make_gate, engine):
    report = make_gate(0.8).probe(QUESTION)
    assert report.gate.decision == "answer" and report.prompt_tokens > 0
    assert len(report.lens) == engine.arch.num_layers
    assert all(len(row) == gate.pipeline.LENS_TOP_K for row in report.lens)
    assert report.features.layer.shape[:2] == (1, engine.arch.num_layers)

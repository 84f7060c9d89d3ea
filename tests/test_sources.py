"""Chat turns that are not knowledge questions and conversational variants of knowledge questions, read from the
installed packages; every shipped id gets its text back."""
from __future__ import annotations

import re

import pytest

from training.chat_sources import _RG_TASKS, CHAT_LOADERS
from training.sources import by_id, load_examples
from training.variants import VARIANTS


@pytest.mark.parametrize("name", sorted(CHAT_LOADERS))
def test_chat_sources_are_turns_without_golds(name):
    turns = load_examples({name: None})
    assert len(turns) >= 15, name
    for t in turns[:50]:
        assert not t.factual and t.golds == [] and t.question.strip() and t.source == name
        assert all(m["role"] in ("user", "assistant") and isinstance(m["content"], str) for m in t.history)
        assert t.messages()[-1] == {"role": "user", "content": t.question}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variants_keep_source_golds_and_come_back_by_id(variant):
    turns = load_examples({f"red~{variant}": 40}, seed=1)
    assert turns and all(t.source == "red" and t.factual and t.golds and t.id.endswith(f"~{variant}") for t in turns)
    if variant != "conv":
        assert all(len(t.history) == 2 and t.history[1]["role"] == "assistant" for t in turns)
    rows = [{"id": t.id, "source": t.source} for t in turns]
    back = by_id(rows)
    assert all(back[t.id].question == t.question and back[t.id].history == t.history for t in turns)


def test_new_knowledge_sources_load():
    for name in ("fanoutqa", "freshqa", "cbtrivia", "redfandom"):
        turns = load_examples({name: 30})
        assert len(turns) == 30 and all(t.factual and t.golds and t.source == name for t in turns)


@pytest.mark.parametrize("name", sorted(_RG_TASKS))
def test_reasoning_gym_tasks_are_seeded_and_all_contribute(name):
    """Procedural tasks: the same turns on every load (shipped rows find their text by id), most of each task's
    instances short enough to be a chat turn."""
    first, again = CHAT_LOADERS[name](), CHAT_LOADERS[name]()
    assert [t.id for t in first] == [t.id for t in again]
    assert len({t.id for t in first}) == len(first) >= 8 * len(_RG_TASKS[name][1])


def test_real_chat_sources_read_as_a_user_types():
    """ALICE's patterns lose their wildcards and upper case; AgentDojo's f-string prompts are filled in; tau2's
    instructions to a simulated customer become the customer's own words."""
    alice = CHAT_LOADERS["alice"]()
    assert {t.category for t in alice} == {"persona", "emotion", "smalltalk"}
    assert "What is your favorite book?" in {t.question for t in alice}
    assert not any(re.search(r"[*_<>#]|[A-Z]{2}", t.question) for t in alice)
    dojo = CHAT_LOADERS["agentdojo"]()
    assert len(dojo) >= 80 and {t.category for t in dojo} == {"userdata"}
    assert not any(re.search(r"\{_?[A-Z_]+\}", t.question) for t in dojo)
    tau2 = CHAT_LOADERS["tau2"]()
    assert len(tau2) >= 150 and all(re.match(r"(I|My)\b", t.question) for t in tau2)
    assert not any(re.search(r"\byour?\b", t.question, re.IGNORECASE) for t in tau2)


def test_unknown_source_is_named():
    with pytest.raises(ValueError, match="unknown source 'nope'"):
        load_examples({"nope": None})

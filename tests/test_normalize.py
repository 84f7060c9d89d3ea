"""Answer normalisation and alias matching: the self-label depends on it."""
from __future__ import annotations

import pytest

from gate.normalize import answer_region, canonical, gold_in_question, matches, normalize, number_to_words


@pytest.mark.parametrize("text, expected", [
    ("The Beatles!", "beatles"),
    ("  A  tale of Two   Cities. ", "tale of two cities"),
    ("Côte d'Ivoire", "cote d ivoire"),
    ("1,000,000 people", "1000000 people"),
    ("3.14", "3.14"),                   # a decimal stays one token
    ("In 1990. Then", "in 1990 then"),
    ("an Apple", "apple"),
])
def test_normalize(text, expected):
    assert normalize(text) == expected


@pytest.mark.parametrize("answer, golds, label", [
    ("The capital of France is Paris.", ["Paris"], True),
    ("It is in the United States of America.", ["United States", "USA"], True),
    ("There are 7 continents.", ["Seven"], True),              # digits in the answer, words in the gold
    ("There are seven continents.", ["7"], True),               # and the other way round
    ("Its population is 1,200,000.", ["1200000"], True),       # thousands separators
    ("Twenty-one guns are fired.", ["21"], True),
    ("Parisian food is great.", ["Paris"], False),              # whole tokens only
    ("I am not sure.", ["Paris"], False),
    ("The answer is The Who.", ["the who"], True),              # articles dropped on both sides
    ("London\nParis is also nice.", ["Paris"], False),          # only the first line states the answer
    ("\n\nParis", ["Paris"], True),                              # leading blank lines skipped
    ("It is 17 years old.", ["seven"], False),
    ("It was built in 201 BC.", ["2"], False),                  # no number matches a piece of another
    ("It was built in two hundred one BC.", ["2"], False),
    ("It measures 102.5 metres.", ["5"], False),
    ("It measures 102.5 metres.", ["102.5"], True),
    ("Water boils at 100.0 degrees.", ["100"], True),          # trailing zeros do not make another number
    ("The rate is 1.50%.", ["1.5%"], True),
    ("The score was twenty one.", ["one"], False),
    ("", ["Paris"], False),
])
def test_matches(answer, golds, label):
    assert matches(answer, golds) is label


def test_canonical_writes_number_words_as_digits():
    assert canonical("Twenty-one guns, not twenty") == "21 guns not 20"
    assert canonical("The One Show") == "1 show"


def test_number_words():
    assert number_to_words(0) == "zero"
    assert number_to_words(42) == "forty two"
    assert number_to_words(305) == "three hundred five"


def test_answer_region_and_gold_in_question():
    assert answer_region("\n  \nFirst line\nsecond") == "First line"
    assert gold_in_question("Is it red or blue?", ["Blue"])
    assert not gold_in_question("What colour is the sky?", ["Blue"])

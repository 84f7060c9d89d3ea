"""The shipped evaluation of a model (data/<slug>/): read whatever the training run left, in any nesting.

The view must not depend on one metrics.json layout: nested scalars become a table with one row per
path of parent keys and one column per metric name; short lists (intervals) are shown as text, long
ones (curves) are left to the figures. Markdown summaries (README.md first, then every other *.md,
e.g. metrics.md and seeding.md) are shown as written.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

Scalar = int | float | str | bool | None
_NAME_KEYS = ("name", "split", "source", "model", "method")
_TABLES = ("metrics.json", "applicability.json", "seeding.json")  # P(knows) and P(factual) metrics; seeded generation
_SHORT_LIST = 4   # longer lists of numbers are curves, drawn by the shipped figures


@dataclass
class ShippedEvaluation:
    directory: Path
    summaries: dict[str, str] = field(default_factory=dict)   # file name → Markdown text
    columns: list[str] = field(default_factory=list)
    rows: list[list[Scalar]] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)   # shipped JSON files that could not be read

    @property
    def empty(self) -> bool:
        return not (self.summaries or self.rows or self.figures or self.problems)


def _leaves(node, path: tuple[str, ...]):
    """Yield (parent path, metric name, value) for every scalar under `node`."""
    if isinstance(node, dict):
        for key, value in node.items():
            if _is_short(value):
                yield path, str(key), "[" + ", ".join(str(_rounded(v)) for v in value) + "]"
            elif isinstance(value, (dict, list)):
                yield from _leaves(value, path + (str(key),))
            else:
                yield path, str(key), value
    elif isinstance(node, list) and all(isinstance(v, dict) for v in node):
        for i, item in enumerate(node):
            key = next((k for k in _NAME_KEYS if isinstance(item.get(k), str)), None)
            label = item[key] if key else str(i)
            yield from _leaves({k: v for k, v in item.items() if k != key}, path + (label,))


def metrics_table(metrics: dict) -> tuple[list[str], list[list[Scalar]]]:
    """Pivot nested metrics into (columns, rows): first column the parent path, then one per metric name."""
    table: dict[str, dict[str, Scalar]] = {}
    names: dict[str, None] = {}
    for path, name, value in _leaves(metrics, ()):
        table.setdefault(" / ".join(path) or "(overall)", {})[name] = value
        names.setdefault(name, None)
    columns = ["where", *names]
    rows = [[where, *(_rounded(cells.get(n)) for n in names)] for where, cells in table.items()]
    return columns, rows


def _is_short(value) -> bool:
    return isinstance(value, list) and 0 < len(value) <= _SHORT_LIST and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


def _rounded(value: Scalar) -> Scalar:
    return round(value, 4) if isinstance(value, float) else value


def load_evaluation(directory: Path) -> ShippedEvaluation:
    """Everything shipped in `directory`; an absent folder gives an empty result, never an error."""
    found = ShippedEvaluation(directory)
    if not directory.is_dir():
        return found
    markdown = sorted(directory.glob("*.md"), key=lambda p: (p.name != "README.md", p.name))
    found.summaries = {p.name: p.read_text() for p in markdown}
    tables = {}
    for path in (directory / name for name in _TABLES):
        if not path.is_file():
            continue
        try:
            tables[path.stem] = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            found.problems.append(f"{path.name} is not valid JSON: {exc}")
    if tables:  # one table; each row's path starts with the file it came from
        found.columns, found.rows = metrics_table(tables)
    found.figures = sorted(directory.rglob("*.png"))
    return found

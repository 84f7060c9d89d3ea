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


# ---- choosing bands: the sweep over held-out questions (written by training/band_sweep.py) ----------------
BANDS_FILE = "bands.json"
OUTCOMES = ("answered", "hedged", "abstained")


@dataclass
class BandSweep:
    """For held-out questions the model got right / wrong: the share with P(knows) ≥ t on a threshold grid.

    Under bands (low, high) a question is abstained below low, hedged up to high, answered from high, so
    two curves give every outcome: correct answers kept = above(low), answered = above(high); wrong answers
    removed = 1 − above(low) of the wrong ones. Thresholds are looked up on the grid (step 0.01).
    """
    thresholds: list[float]
    correct_above: list[float]
    wrong_above: list[float]
    n_correct: int
    n_wrong: int
    configured: tuple[float, float]
    recommended: tuple[float, float]
    source: str = ""

    def _at(self, curve: list[float], t: float) -> float:
        i = min(range(len(self.thresholds)), key=lambda k: abs(self.thresholds[k] - t))
        return curve[i]

    def shares(self, low: float, high: float) -> dict[str, dict[str, float]]:
        """{correct|wrong: {answered, hedged, abstained}} as shares of the correct / wrong answers."""
        out = {}
        for name, curve in (("correct", self.correct_above), ("wrong", self.wrong_above)):
            lo, hi = self._at(curve, low), self._at(curve, high)
            out[name] = {"answered": hi, "hedged": lo - hi, "abstained": 1.0 - lo}
        return out


def yaml_lines(low: float, high: float) -> str:
    """The gate.yaml lines that set these bands."""
    return f"policy:\n  bands: {{low: {low:.2f}, high: {high:.2f}}}"


def load_band_sweep(directory: Path) -> BandSweep | None:
    """The shipped sweep, or None when there is none (or it cannot be read)."""
    try:
        raw = json.loads((directory / BANDS_FILE).read_text())
        return BandSweep(raw["thresholds"], raw["correct_above"], raw["wrong_above"], raw["n_correct"],
                         raw["n_wrong"], tuple(raw["configured"]), tuple(raw["recommended"]), raw.get("source", ""))
    except (OSError, ValueError, KeyError, TypeError):
        return None

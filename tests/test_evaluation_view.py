"""The Evaluation tab's loader: any nesting of metrics.json becomes a table; nothing shipped is not an error."""
from __future__ import annotations

import json

import pytest

from gate.adapters.evaluation import load_evaluation, metrics_table


def test_nested_metrics_pivot_to_one_row_per_path():
    metrics = {"n": 1200,
               "test": {"sidecar": {"auroc": 0.81234, "ece": 0.05, "ci": [0.712345, 0.9]}, "entropy": {"auroc": 0.73}},
               "splits": [{"name": "cross", "auroc": 0.67}],
               "curve": {"coverage": [0.1, 0.2, 0.3, 0.4, 0.5]}}
    columns, rows = metrics_table(metrics)
    assert columns == ["where", "n", "auroc", "ece", "ci"]
    assert rows == [["(overall)", 1200, None, None, None],
                    ["test / sidecar", None, 0.8123, 0.05, "[0.7123, 0.9]"],
                    ["test / entropy", None, 0.73, None, None],
                    ["splits / cross", None, 0.67, None, None]]


def test_absent_folder_is_empty(tmp_path):
    found = load_evaluation(tmp_path / "no-such-model")
    assert found.empty and found.problems == []


def test_shipped_folder_gives_readme_table_and_figures(tmp_path):
    (tmp_path / "metrics.md").write_text("| split | AUROC |\n|---|---|\n| test | 0.8 |\n")
    (tmp_path / "seeding.md").write_text("seeded vs baseline")
    (tmp_path / "README.md").write_text("# shipped")
    (tmp_path / "metrics.json").write_text(json.dumps({"test": {"auroc": 0.8}}))
    (tmp_path / "seeding.json").write_text(json.dumps({"seeded": {"accuracy_answered": 0.5}}))
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "reliability.png").write_bytes(b"\x89PNG")
    found = load_evaluation(tmp_path)
    assert not found.empty
    assert list(found.summaries) == ["README.md", "metrics.md", "seeding.md"]
    assert "AUROC" in found.summaries["metrics.md"]
    assert found.columns == ["where", "auroc", "accuracy_answered"]
    assert found.rows == [["metrics / test", 0.8, None], ["seeding / seeded", None, 0.5]]
    assert [p.name for p in found.figures] == ["reliability.png"]


def test_broken_metrics_json_is_reported_not_raised(tmp_path):
    (tmp_path / "metrics.json").write_text("{not json")
    found = load_evaluation(tmp_path)
    assert len(found.problems) == 1 and "metrics.json is not valid JSON" in found.problems[0]
    assert found.rows == []


def test_band_sweep_shares_follow_the_bands(tmp_path):
    """Outcomes at any pair of bands come from the two curves; written by training, read back by the view."""
    import numpy as np

    from gate.adapters import figures
    from gate.adapters.evaluation import load_band_sweep
    from training.band_sweep import save

    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.5, 0.1, 0.75, 0.45, 0.3, 0.2, 0.1, 0.05])
    written = save(tmp_path, y, p, (0.4, 0.7), {"low": 0.25, "high": 0.85})
    assert (tmp_path / "bands.json").is_file() and (tmp_path / "figures" / "bands.png").stat().st_size > 1000
    sweep = load_band_sweep(tmp_path)
    assert sweep == written and sweep.configured == (0.4, 0.7) and (sweep.n_correct, sweep.n_wrong) == (4, 6)
    at = sweep.shares(0.4, 0.7)
    assert at["correct"] == {"answered": 0.5, "hedged": 0.25, "abstained": 0.25}
    assert at["wrong"] == pytest.approx({"answered": 1 / 6, "hedged": 1 / 6, "abstained": 4 / 6})
    assert sweep.shares(0.0, 0.0)["correct"]["answered"] == 1.0 and sweep.shares(1.0, 1.0)["wrong"]["abstained"] == 1
    fig = figures.band_sweep(sweep, 0.3, 0.6)
    assert len(fig.data) == 2 and len(fig.layout.shapes) == 6  # two curves; low/high for three pairs of bands
    text = figures.band_outcomes_markdown(sweep, 0.3, 0.6)
    assert "policy:\n  bands: {low: 0.25, high: 0.85}" in text and "chosen (sliders) 0.30 / 0.60" in text


def test_no_band_sweep_shipped_is_none(tmp_path):
    from gate.adapters.evaluation import load_band_sweep
    assert load_band_sweep(tmp_path) is None

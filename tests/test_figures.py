"""Figure builders: the drawn bands, layers and marks must be the numbers the gate actually used."""
from __future__ import annotations

import numpy as np
import pytest

from gate.adapters import figures
from gate.config import Settings
from gate.engine.features import LAYER_FEATURES, band_layers

L = 30


@pytest.fixture()
def layer() -> np.ndarray:
    """A synthetic [L, F] feature matrix with a known shape per feature."""
    rng = np.random.default_rng(0)
    m = rng.uniform(0.1, 1.0, size=(L, len(LAYER_FEATURES))).astype(np.float16)
    m[:, LAYER_FEATURES.index("entropy_last")] = np.linspace(9, 1, L)
    m[:, LAYER_FEATURES.index("peakedness_last")] = 1.0
    m[17, LAYER_FEATURES.index("peakedness_last")] = 5.0   # inside the default band (layers 10..22)
    m[29, LAYER_FEATURES.index("peakedness_last")] = 9.0   # stronger, but outside the band
    return m


@pytest.fixture()
def band() -> slice:
    return band_layers(L, Settings().features.recall_band)


def test_gauge_zones_are_the_configured_bands():
    bands = Settings().policy.bands
    fig = figures.gauge(0.55, (bands.low, bands.high), "hedge")
    ind = fig.data[0]
    steps = [(s.name, tuple(s.range)) for s in ind.gauge.steps]
    assert steps == [("abstain", (0.0, bands.low)), ("hedge", (bands.low, bands.high)), ("answer", (bands.high, 1.0))]
    assert ind.value == pytest.approx(0.55)
    assert tuple(ind.gauge.axis.range) == (0, 1)
    assert "hedge" in fig.layout.title.text


def test_gauge_follows_overridden_bands_and_missing_probability():
    fig = figures.gauge(None, (0.2, 0.9), None)
    assert [tuple(s.range) for s in fig.data[0].gauge.steps] == [(0.0, 0.2), (0.2, 0.9), (0.9, 1.0)]
    assert "number" not in fig.data[0].mode
    assert "no sidecar" in fig.layout.title.text


def test_signal_a_plots_every_layer_and_shades_the_band(layer, band):
    fig = figures.signal_a(layer, band)
    entropy, margin = fig.data
    assert list(entropy.x) == list(range(1, L + 1))
    np.testing.assert_allclose(entropy.y, layer[:, LAYER_FEATURES.index("entropy_last")].astype(float))
    np.testing.assert_allclose(margin.y, layer[:, LAYER_FEATURES.index("margin_last")].astype(float))
    assert margin.yaxis == "y2"
    (rect,) = fig.layout.shapes
    # 1-based layers band.start+1 .. band.stop lie inside the shaded rectangle, their neighbours outside.
    assert rect.x0 < band.start + 1 and rect.x1 > band.stop
    assert rect.x0 > band.start and rect.x1 < band.stop + 1


def test_signal_b_marks_the_strongest_write_inside_the_band(layer, band):
    assert figures.strongest_layer(layer, band) == 17
    fig = figures.signal_b(layer, band)
    ratio, peaked, mark = fig.data
    assert len(ratio.x) == len(peaked.x) == L
    assert list(mark.x) == [18] and mark.y[0] == pytest.approx(5.0)
    assert len(fig.layout.shapes) == 1
    assert fig.layout.yaxis.type == "log"  # write ratios span orders of magnitude across depth


def _lens(num_layers: int) -> list[list[tuple[str, float]]]:
    """Per layer, three (token, prob) pairs named after the layer, most probable first."""
    return [[(f" tok{l}", 0.5), (f"alt{l}", 0.2), ("\n", 0.1)] for l in range(num_layers)]


def test_forming_rows_read_top_tokens_at_band_edges_and_ends(band):
    rows = figures.forming_rows(_lens(L), band)
    layers = [r[0] for r in rows]
    assert layers[0] == 1 and layers[-1] == L
    assert band.start + 1 in layers and band.stop in layers
    assert layers == sorted(set(layers))
    for row in rows:
        assert len(row) == len(figures.FORMING_COLUMNS)
        assert row[2] == repr(f" tok{row[0] - 1}") and row[3] == 0.5
        assert row[4] == f"'alt{row[0] - 1}' 0.20 · '\\n' 0.10"
        assert row[5] == (band.start < row[0] <= band.stop)


def test_forming_rows_on_a_tiny_model_do_not_repeat_layers():
    rows = figures.forming_rows(_lens(2), band_layers(2, (0.35, 0.75)))
    assert [r[0] for r in rows] == [1, 2]


def test_verdict_badge_uses_the_decision_colour():
    html = figures.verdict_html(0.123, "abstain")
    assert "12.3%" in html and "abstain" in html and figures.DECISION_COLORS["abstain"] in html
    assert "no verdict" in figures.verdict_html(None, None)
    assert "no sidecar for &lt;m&gt;" in figures.verdict_html(None, None, note="no sidecar for <m>")

"""Plotly figures for the view: pure functions of the gate's numbers, so they are testable without a model.

Layers are shown 1-based ("layer l" is the residual after decoder block l), matching how people count depth.
"""
from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from gate.adapters.evaluation import OUTCOMES, BandSweep, yaml_lines
from gate.config import FACTUAL_THRESHOLD
from gate.engine.features import LAYER_FEATURES
from gate.turns import Decision

# One colour per decision, shared by the gauge zones, the verdict badge and the head-to-head marks.
DECISION_COLORS: dict[str, str] = {"abstain": "#e45756", "hedge": "#f2b447", "answer": "#54a24b", "pass": "#6c7a89"}
_BAND_FILL = "rgba(99, 110, 250, 0.12)"
_HEIGHT = 320


def _layout(fig: go.Figure, title: str) -> go.Figure:
    fig.update_layout(title=title, height=_HEIGHT, margin=dict(l=50, r=50, t=60, b=40),
                      legend=dict(orientation="h", y=-0.3), template="plotly_white")
    return fig


def _column(layer: np.ndarray, name: str) -> np.ndarray:
    """One per-layer feature of a single example's [L, F] matrix, as float64 for plotting."""
    return np.asarray(layer[:, LAYER_FEATURES.index(name)], dtype=np.float64)


def gauge(p_knows: float | None, bands: tuple[float, float], decision: Decision | None) -> go.Figure:
    """P(knows) on a 0–1 dial whose coloured zones are exactly the policy's abstain / hedge / answer bands."""
    low, high = bands
    zones = [("abstain", 0.0, low), ("hedge", low, high), ("answer", high, 1.0)]
    verdict = decision or ("no sidecar" if p_knows is None else "")
    fig = go.Figure(go.Indicator(
        mode="gauge+number" if p_knows is not None else "gauge",
        value=p_knows if p_knows is not None else 0.0,
        number=dict(valueformat=".1%"),
        gauge=dict(
            axis=dict(range=[0, 1], tickvals=[0, low, high, 1], tickformat=".0%"),
            bar=dict(color="#333333", thickness=0.3),
            steps=[dict(range=[a, b], color=DECISION_COLORS[name], name=name) for name, a, b in zones],
        ),
    ))
    return _layout(fig, f"P(knows) → {verdict}")


def _band_rect(fig: go.Figure, band: slice) -> None:
    """Shade the recall band, edges half a layer out so the band's first and last layers sit inside."""
    fig.add_vrect(x0=band.start + 0.5, x1=band.stop + 0.5, fillcolor=_BAND_FILL, line_width=0,
                  layer="below", annotation_text="recall band", annotation_position="top left")


def _two_axis(layer: np.ndarray, band: slice, left: tuple[str, str], right: tuple[str, str], title: str,
              left_log: bool = False) -> go.Figure:
    """Two per-layer features on their own y axes over one shared layer axis, recall band shaded."""
    x = np.arange(1, layer.shape[0] + 1)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=_column(layer, left[0]), name=left[1], mode="lines+markers"))
    fig.add_trace(go.Scatter(x=x, y=_column(layer, right[0]), name=right[1], mode="lines+markers", yaxis="y2"))
    fig.update_layout(xaxis=dict(title="layer", range=[0.5, layer.shape[0] + 0.5]),
                      yaxis=dict(title=left[1], type="log" if left_log else "linear"),
                      yaxis2=dict(title=right[1], overlaying="y", side="right"))
    _band_rect(fig, band)
    return _layout(fig, title)


def signal_a(layer: np.ndarray, band: slice) -> go.Figure:
    """Logit-lens trajectory at the final prompt position: how sure each depth already is of the next token."""
    return _two_axis(layer, band, ("entropy_last", "lens entropy (nats)"), ("margin_last", "top-1 margin"),
                     "Signal A: logit lens by layer")


def strongest_layer(layer: np.ndarray, band: slice) -> int:
    """0-based layer of the most peaked MLP write inside the recall band (where facts are recalled, not formatted)."""
    return band.start + int(np.argmax(_column(layer, "peakedness_last")[band]))


def signal_b(layer: np.ndarray, band: slice) -> go.Figure:
    """MLP-write strength and peakedness by layer, with the band's strongest recall write marked.

    Write strength is on a log axis: the first and last layers' writes dwarf the mid-depth ones.
    """
    fig = _two_axis(layer, band, ("write_ratio_last", "‖write‖ / ‖residual‖"),
                    ("peakedness_last", "write peakedness (nats)"), "Signal B: MLP writes by layer", left_log=True)
    top = strongest_layer(layer, band)
    fig.add_trace(go.Scatter(x=[top + 1], y=[_column(layer, "peakedness_last")[top]], yaxis="y2",
                             mode="markers+text", name="strongest", text=[f"layer {top + 1}"],
                             textposition="top center", marker=dict(size=14, symbol="star", color="#d62728")))
    return fig


def forming_depths(num_layers: int, band: slice) -> list[int]:
    """0-based layers worth reading: first, recall-band start / middle / end, and final."""
    picks = [0, band.start, (band.start + band.stop - 1) // 2, band.stop - 1, num_layers - 1]
    return sorted(set(picks))


FORMING_COLUMNS = ["layer", "depth", "lens top-1", "p(top-1)", "runners-up", "in recall band"]


def forming_rows(lens: Sequence[Sequence[tuple[str, float]]], band: slice) -> list[list]:
    """"What's forming": the logit lens's top tokens (final prompt position) at a few depths, as table rows.

    Tokens are shown quoted (repr) so leading spaces and newlines are visible.
    """
    num_layers = len(lens)
    rows = []
    for l in forming_depths(num_layers, band):
        (token, p), *rest = lens[l]
        runners = " · ".join(f"{t!r} {q:.2f}" for t, q in rest)
        rows.append([l + 1, f"{(l + 1) / num_layers:.0%}", repr(token), round(p, 3), runners,
                     band.start <= l < band.stop])
    return rows


def verdict_html(p_knows: float | None, decision: Decision | None, extra: Sequence[str] = (),
                 note: str | None = None, p_factual: float | None = None, factual_threshold: float = FACTUAL_THRESHOLD) -> str:
    """A coloured badge with the probabilities and decision, in plain text the browser test can read."""
    factual = "" if p_factual is None else f"P(factual) = <b>{p_factual:.1%}</b> · "
    if p_knows is None or decision is None:
        return f"<div>{factual}<b>no verdict</b>: {html.escape(note or 'no P(knows) in mode off')}</div>"
    color = DECISION_COLORS[decision]
    tail = "".join(f" · {html.escape(e)}" for e in extra)
    head = (f"{factual}below {factual_threshold:.0%}: not a knowledge question → <b>pass</b> (no seed) · "
            f"P(knows) = {p_knows:.1%}" if decision == "pass" else
            f"{factual}P(knows) = <b>{p_knows:.1%}</b> → <b>{decision}</b>")
    return (f"<div style='padding:8px 12px;border-radius:8px;background:{color};color:#fff;"
            f"font-size:1.2em'>{head}{tail}</div>")


def band_sweep(sweep: BandSweep, low: float, high: float) -> go.Figure:
    """Correct answers kept / wrong answers removed as a band threshold moves, with the configured, the
    recommended and the currently chosen bands marked (curves from the shipped bands.json)."""
    fig = go.Figure()
    wrong_below = [1.0 - v for v in sweep.wrong_above]
    fig.add_trace(go.Scatter(x=sweep.thresholds, y=sweep.correct_above, name=f"correct answers with P ≥ t "
                             f"(n={sweep.n_correct}): kept if t = low, answered if t = high",
                             line=dict(color=DECISION_COLORS["answer"], width=3)))
    fig.add_trace(go.Scatter(x=sweep.thresholds, y=wrong_below, name=f"wrong answers with P < t "
                             f"(n={sweep.n_wrong}): removed if t = low, not answered if t = high",
                             line=dict(color=DECISION_COLORS["abstain"], width=3)))
    for (lo, hi), name, dash in ((sweep.configured, "configured", "dot"), (sweep.recommended, "recommended", "solid"),
                                 ((low, high), "chosen", "dash")):
        for v, which, pos in ((lo, "low", "bottom"), (hi, "high", "top")):
            fig.add_vline(x=v, line=dict(dash=dash, width=1, color="#555"),
                          annotation=dict(text=f"{name} {which} {v:.2f}", textangle=-90, font=dict(size=10)),
                          annotation_position=f"{pos} right")
    fig.update_layout(xaxis=dict(title="band threshold t = P(knows)", range=[0, 1]),
                      yaxis=dict(title="share", range=[0, 1.02]))
    return _layout(fig, f"Moving the bands ({sweep.source})").update_layout(height=420)


def band_outcomes_markdown(sweep: BandSweep, low: float, high: float) -> str:
    """The outcome split of correct and wrong answers at each pair of bands, and the gate.yaml lines to set them."""
    head = ("| bands | correct: answered | hedged | abstained | wrong: answered | hedged | abstained (removed) |\n"
            "|---|---|---|---|---|---|---|\n")
    lines = []
    for name, (lo, hi) in (("configured", sweep.configured), ("recommended", sweep.recommended),
                           ("chosen (sliders)", (low, high))):
        sh = sweep.shares(lo, hi)
        cells = [f"{sh[kind][o]:.0%}" for kind in ("correct", "wrong") for o in OUTCOMES]
        lines.append(f"| {name} {lo:.2f} / {hi:.2f} | " + " | ".join(cells) + " |")
    return (head + "\n".join(lines) +
            f"\n\nRecommended bands in `gate.yaml`:\n```yaml\n{yaml_lines(*sweep.recommended)}\n```\n"
            f"The sliders' bands:\n```yaml\n{yaml_lines(low, high)}\n```")

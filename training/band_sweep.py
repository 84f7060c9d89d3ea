"""Choosing bands by looking: how the served model's held-out questions fare as the bands move.

For the questions the model answers correctly and those it gets wrong (greedy, the dataset's label), the
share whose P(knows) is at least t, on a grid of t. With the policy's bands that gives, for any (low, high),
the share of correct answers kept (answered or hedged) and of wrong answers removed (abstained) or flagged
(hedged). Writes bands.json (read by the UI's Evaluation tab) and figures/bands.png next to the metrics.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gate.adapters.evaluation import BANDS_FILE, OUTCOMES, BandSweep, yaml_lines

GRID = np.round(np.linspace(0.0, 1.0, 101), 2)
_COLORS = {"answered": "#54a24b", "hedged": "#f2b447", "abstained": "#e45756"}


def sweep(y: np.ndarray, p: np.ndarray, configured: tuple[float, float], recommended: tuple[float, float],
          source: str) -> BandSweep:
    """The share of correct (y=1) and wrong (y=0) answers with P(knows) ≥ t, for t on GRID."""
    y, p = np.asarray(y).astype(bool), np.asarray(p, dtype=np.float64)
    above = [[float((p[m] >= t).mean()) if m.any() else 0.0 for t in GRID] for m in (y, ~y)]
    return BandSweep(GRID.tolist(), above[0], above[1], int(y.sum()), int((~y).sum()),
                     tuple(map(float, configured)), tuple(map(float, recommended)), source)


def figure(s: BandSweep, path: Path) -> Path:
    """The PNG: both curves against the threshold with the bands marked, and the outcome split at each pair."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bars) = plt.subplots(1, 2, figsize=(12, 5.2), gridspec_kw={"width_ratios": [1.5, 1]})
    t = np.array(s.thresholds)
    ax.plot(t, s.correct_above, color=_COLORS["answered"], lw=2,
            label=f"correct answers with P ≥ t (n={s.n_correct}): kept if t = low, answered if t = high")
    ax.plot(t, 1 - np.array(s.wrong_above), color=_COLORS["abstained"], lw=2,
            label=f"wrong answers with P < t (n={s.n_wrong}): removed if t = low, not answered if t = high")
    marks: dict[tuple[float, str], list[str]] = {}
    for name, pair in (("configured", s.configured), ("recommended", s.recommended)):
        for v, which in zip(pair, ("low", "high")):
            marks.setdefault((round(v, 2), which), []).append(name)
    for (v, which), names in marks.items():
        ax.axvline(v, color="#555", ls="-" if "recommended" in names else ":", lw=1)
        ax.text(v, 0.03 if which == "low" else 0.45, f"{' = '.join(names)} {which} {v:.2f}", rotation=90,
                fontsize=7, transform=ax.get_xaxis_transform(), ha="right", va="bottom")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="band threshold t (P(knows))", ylabel="share",
           title=f"Moving the bands: held-out questions ({s.source})")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    labels = []
    for k, (name, pair) in enumerate((("configured", s.configured), ("recommended", s.recommended))):
        shares = s.shares(*pair)
        for j, kind in enumerate(("correct", "wrong")):
            row, left = 2 * k + j, 0.0
            for outcome in OUTCOMES:
                v = shares[kind][outcome]
                bars.barh(row, v, left=left, color=_COLORS[outcome], label=outcome if row == 0 else None)
                if v >= 0.06:
                    bars.text(left + v / 2, row, f"{v:.0%}", ha="center", va="center", fontsize=8)
                left += v
            labels.append(f"{name} {pair[0]:.2f}/{pair[1]:.2f}\n{kind} answers")
    bars.set_yticks(range(len(labels)), labels, fontsize=8)
    bars.invert_yaxis()
    bars.set(xlim=(0, 1), xlabel="share of the correct / wrong answers", title="outcome at each pair of bands")
    bars.legend(fontsize=7, ncol=3, loc="lower center", bbox_to_anchor=(0.5, -0.32))
    fig.text(0.99, 0.01, "gate.yaml for the recommended bands:  " + yaml_lines(*s.recommended).replace("\n", "  "),
             ha="right", va="bottom", fontsize=8, family="monospace")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save(out: Path, y: np.ndarray, p: np.ndarray, configured, recommended: dict,
         source: str = "random split, test part") -> BandSweep:
    """Write bands.json and figures/bands.png for the evaluated sidecar's test scores.

    `configured` is the config's Bands (or a (low, high) pair); `recommended` the dict evaluate makes."""
    pair = (configured.low, configured.high) if hasattr(configured, "low") else tuple(configured)
    s = sweep(y, p, pair, (recommended["low"], recommended["high"]), source)
    data = {**s.__dict__, "shares_configured": s.shares(*s.configured),
            "shares_recommended": s.shares(*s.recommended), "yaml_recommended": yaml_lines(*s.recommended)}
    out.mkdir(parents=True, exist_ok=True)
    (out / BANDS_FILE).write_text(json.dumps(data, indent=1))
    figure(s, out / "figures" / "bands.png")
    return s

"""Applicability: does answering this turn depend on the model's stored knowledge of facts?

P(knows) means something only for a factual question answered from memory. Greetings, writing tasks, code,
maths, transforming given text, questions answered by the conversation itself, advice and instructions must
pass the gate untouched. This estimator reads the features the probe already computed (no second forward):
the residual stream at the final prompt position, where the model has read the whole conversation (and,
where the model has a message read, averaged over the latest user message's own tokens), the global lens
scalars and the per-layer lens / MLP-write trajectory (what each layer expects next tells kinds of turns apart
too: data/<model>/README.md has the held-out numbers with and without each read). A standardised, strongly
L2-regularised logistic regression (C from a grid, chosen on validation AUROC; the default grid is one value
chosen on held-out sources), Platt-calibrated on validation for an even prior of knowledge and other turns:
P(factual) costs one dot product.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from gate.engine.features import Features
from gate.sidecar import check_signature, model_signature, residual_reads, sidecar_dir

FILE = "applicability.npz"


class Applicability:
    """fit / predict_proba / save / load, like the sidecar; P(the turn is a knowledge question).

    Two reads of one forward, a cascade: an early read of the residual stream alone, known as soon as the
    forward ends, and the full read (residual + lens trajectory + globals). A turn whose early P(factual) lies
    outside the `early` band (below its low end: surely not a knowledge question; at or above its high end:
    surely one) is decided on it, and the lens is never computed for it (LazyFeatures); every other turn is
    decided by the full read. Held out, the cascade decides as the full read does while most turns end early
    (data/<model>/applicability.md).
    """

    # Strong regularisation, sources weighed equally. Chosen by leave-one-source-out on both shipped models
    # (training/evaluate_applicability.py --C; data/<model>/applicability_C.md): 1e-2 separates SmolLM2's held-out
    # sources a little better (AUROC 0.989 vs 0.986) but Qwen's (579 chat turns) much worse (0.940 vs 0.970).
    # early: chosen on held-out sources (data/smollm2-135m-instruct/README.md): at (0.2, 0.95) no held-out turn's
    # decision changed (3 draws on SmolLM2, 1 on Qwen) and 90% of chat turns and 86% of knowledge questions ended
    # early on SmolLM2; (0, inf) turns it off.
    defaults = dict(C=(1e-3,), clip=6.0, early=(0.2, 0.95))
    READS = ("", "early_")  # state key prefixes: the full read, the early read (the residual alone)

    def __init__(self, signature: dict | None = None, **hyperparams):
        self.hp = {**self.defaults, **hyperparams}
        self.signature: dict = dict(signature or {})
        self.state: dict[str, np.ndarray] = {}

    def _matrix(self, feats: Features, read: str = "", fit: bool = False) -> np.ndarray:
        parts = [residual_reads(feats)]
        if not read:  # the full read; the early one never touches the (lazy) trajectory
            parts += [feats.globals, feats.layer.reshape(len(feats.layer), -1)]
        x = np.nan_to_num(np.concatenate(parts, axis=1).astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        if fit:
            self.state[f"{read}mean"], self.state[f"{read}std"] = x.mean(0), x.std(0) + 1e-4
        return np.clip((x - self.state[f"{read}mean"]) / self.state[f"{read}std"], -self.hp["clip"], self.hp["clip"])

    def fit(self, train: Features, y_train: np.ndarray, val: Features, y_val: np.ndarray,
            groups: np.ndarray | None = None) -> "Applicability":
        """Fit both reads on `train` (y = 1 for knowledge questions); choose C and calibrate on `val`. With
        `groups` (each row's source), every source weighs the same within its class: 60 arithmetic turns count
        as much as 4,000 trivia questions, so a small kind of turn is not drowned out."""
        y_tr, y_va = np.asarray(y_train, int), np.asarray(y_val, int)
        weights = _balanced(y_tr, groups)
        with threadpool_limits(1):
            for read in self.READS if self._early_band_open() else ("",):
                x_tr, x_va = self._matrix(train, read, fit=True), self._matrix(val, read)
                fits = [LogisticRegression(C=C, max_iter=2000).fit(x_tr, y_tr, sample_weight=weights)
                        for C in self.hp["C"]]
                best = max(fits, key=lambda m: roc_auc_score(y_va, m.decision_function(x_va)))
                self.state.update({f"{read}coef": best.coef_[0].astype(np.float32),
                                   f"{read}bias": best.intercept_.astype(np.float32), f"{read}C": np.array(best.C)})
                # Balanced: the share of knowledge questions in the training mix says nothing about a user's
                # traffic, so P(factual) is calibrated for an even prior and 0.5 weighs both mistakes alike.
                platt = LogisticRegression(C=1e4, max_iter=1000, class_weight="balanced").fit(
                    self.decision_function(val, read)[:, None], y_va)
                self.state[f"{read}platt"] = np.array([platt.coef_[0, 0], platt.intercept_[0]], dtype=np.float32)
        return self

    def decision_function(self, feats: Features, read: str = "") -> np.ndarray:
        """Uncalibrated logit of one read (the full one by default), shape [B]."""
        return self._matrix(feats, read) @ self.state[f"{read}coef"] + self.state[f"{read}bias"]

    def read_proba(self, feats: Features, read: str = "") -> np.ndarray:
        """Calibrated P(factual) of one read alone ("": the full read, "early_": the residual alone), [B]."""
        a, b = self.state[f"{read}platt"]
        return 1.0 / (1.0 + np.exp(-(a * self.decision_function(feats, read).astype(np.float64) + b)))

    def _early_band_open(self) -> bool:
        low, high = self.hp["early"]
        return low > 0 or high <= 1

    @property
    def cascades(self) -> bool:
        """Whether the early read decides first (checkpoints from before it have none)."""
        return self._early_band_open() and "early_coef" in self.state

    def _cascades_at(self, threshold: float | None) -> bool:
        """Whether the early read may decide a turn judged at `threshold`: only where the threshold lies inside the
        band, the only place it was checked that a sure early read falls on the full read's side of it (held out)."""
        low, high = self.hp["early"]
        return self.cascades and (threshold is None or low <= threshold <= high)

    def exits_early(self, feats: Features, threshold: float | None = None) -> np.ndarray:
        """[B] bool: the turns the early read decides on its own (the lens is not needed for them)."""
        if not self._cascades_at(threshold):
            return np.zeros(len(feats.hidden), bool)
        return decided_early(self.read_proba(feats, "early_"), self.hp["early"])

    def predict_proba(self, feats: Features, threshold: float | None = None) -> np.ndarray:
        """Calibrated P(factual), shape [B]: the early read's where it decides, else the full read's. `threshold`:
        the turn's (a per-request one outside the early band turns the cascade off for it)."""
        if not self._cascades_at(threshold):
            return self.read_proba(feats, "")
        early = self.read_proba(feats, "early_")
        decided = decided_early(early, self.hp["early"])
        return early if decided.all() else np.where(decided, early, self.read_proba(feats, ""))

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / FILE, **self.state)
        (directory / "applicability.json").write_text(json.dumps({"hyperparams": self.hp, "signature": self.signature},
                                                                 indent=1))

    @classmethod
    def load(cls, directory: str | Path, signature: dict | None = None) -> "Applicability":
        """Load; refuse (SidecarMismatch) if trained for another model or feature layout."""
        directory = Path(directory)
        meta = json.loads((directory / "applicability.json").read_text())
        check_signature(meta["signature"], signature, directory)
        hp = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["hyperparams"].items()}
        out = cls(meta["signature"], **hp)
        with np.load(directory / FILE, allow_pickle=False) as z:
            out.state = {k: z[k] for k in z.files}
        return out


def decided_early(early: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    """[B] bool: the turns whose early P(factual) lies outside `band`, which the early read decides alone."""
    return (early < band[0]) | (early >= band[1])


def _balanced(y: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """Sample weights giving each class half the total, and each group an equal share of its class."""
    groups = np.zeros(len(y)) if groups is None else np.asarray(groups)
    w = np.zeros(len(y))
    for label in (0, 1):
        in_class = y == label
        names = np.unique(groups[in_class])
        for g in names:
            sel = in_class & (groups == g)
            w[sel] = len(y) / (2 * len(names) * sel.sum())
    return w


def load_for(engine) -> Applicability | None:
    """The trained applicability head for this engine's model (next to its sidecar); None if there is none."""
    directory = sidecar_dir(engine.settings, engine.model_id)
    if not (directory / FILE).exists():
        return None
    return Applicability.load(directory, model_signature(engine))

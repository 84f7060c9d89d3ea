"""Baselines on the same splits, all with one interface: fit(train, val) then score(part) -> logit-like scores.

Two read no internals at all (label rate of the category; TF-IDF of the question text): an estimator that
does not beat them is reading the topic, not the model's knowledge.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from gate.engine.features import GLOBAL_FEATURES, Features
from gate.sidecar import Sidecar


@dataclass
class Part:
    """Rows, their features and labels for one side of a split."""
    rows: list[dict]
    feats: Features
    y: np.ndarray

    def take(self, idx: np.ndarray) -> "Part":
        return Part([self.rows[i] for i in idx], self.feats[idx], self.y[idx])


def without_message(feats: Features, signature: dict) -> tuple[Features, dict]:
    """The same features with the message read left out, and the signature of a head that reads none: what the
    evaluations compare the message read against."""
    plain = Features(feats.layer, feats.globals, feats.hidden, feats.top_tokens, feats.message[:, :0])
    return plain, {k: v for k, v in signature.items() if k != "message_depths"}


def _auroc(y: np.ndarray, s: np.ndarray) -> float:
    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else 0.5


class Method(ABC):
    """fit on train (val for model selection), score = any monotone confidence, proba = Platt on val."""
    name = "method"

    def fit(self, train: Part, val: Part) -> "Method":
        return self

    @abstractmethod
    def score(self, part: Part) -> np.ndarray:
        """Higher = more likely the model knows."""

    def calibrate(self, val: Part) -> "Method":
        s = self.score(val).reshape(-1, 1)
        self.platt = LogisticRegression(C=1e4).fit(s, val.y) if 0 < val.y.sum() < len(val.y) else None
        return self

    def proba(self, part: Part) -> np.ndarray:
        if self.platt is None:
            return np.full(len(part.y), 0.5)
        return self.platt.predict_proba(self.score(part).reshape(-1, 1))[:, 1]


class NegEntropy(Method):
    """Negative final-layer lens entropy at the last prompt position: no training at all."""
    name = "neg_entropy"

    def score(self, part: Part) -> np.ndarray:
        return -part.feats.globals[:, GLOBAL_FEATURES.index("final_entropy")].astype(np.float64)


class _LogReg(Method):
    """Standardised, class-balanced logistic regression; C chosen on validation AUROC."""
    grid = (0.001, 0.01, 0.1, 1.0)
    center = True  # sparse text matrices cannot be centred

    @abstractmethod
    def matrix(self, part: Part):
        """The design matrix this regression reads."""

    def fit(self, train: Part, val: Part) -> "_LogReg":
        x_tr, x_va = self.matrix(train), self.matrix(val)

        def model(C: float):
            return make_pipeline(StandardScaler(with_mean=self.center),
                                 LogisticRegression(C=C, class_weight="balanced", max_iter=1000)).fit(x_tr, train.y)
        fits = [model(C) for C in self.grid]
        self.model = max(fits, key=lambda m: _auroc(val.y, m.decision_function(x_va)))
        return self

    def score(self, part: Part) -> np.ndarray:
        return self.model.decision_function(self.matrix(part))


class GlobalsLR(_LogReg):
    name = "globals_lr"

    def matrix(self, part: Part) -> np.ndarray:
        return np.nan_to_num(part.feats.globals.astype(np.float32))


class LayersLR(_LogReg):
    """All per-layer features flattened: what the GRU reads, read linearly."""
    name = "layers_lr"

    def matrix(self, part: Part) -> np.ndarray:
        return np.nan_to_num(part.feats.layer.reshape(len(part.y), -1).astype(np.float32))


class HiddenLR(_LogReg):
    """The last-layer residual at the final prompt position (the strongest probe in the design notes)."""
    name = "hidden_lr"

    def matrix(self, part: Part) -> np.ndarray:
        return part.feats.hidden[:, -1].astype(np.float32)


class TextTfidf(_LogReg):
    """TF-IDF of the question text: reads the topic only, no internals."""
    name = "text_tfidf"
    center = False
    grid = (0.1, 1.0, 10.0)

    def fit(self, train: Part, val: Part) -> "TextTfidf":
        self.vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit([r["question"] for r in train.rows])
        return super().fit(train, val)

    def matrix(self, part: Part):
        return self.vec.transform([r["question"] for r in part.rows])


class CategoryRate(Method):
    """Training label rate of the example's source/category (smoothed towards the source, then the global rate)."""
    name = "category_rate"
    prior = 10.0

    def fit(self, train: Part, val: Part) -> "CategoryRate":
        self.base = float(train.y.mean())
        self.rates: dict[str, float] = {}
        for key in ("source", "group"):
            groups: dict[str, list[int]] = {}
            for r, y in zip(train.rows, train.y):
                groups.setdefault(self._key(r, key), []).append(int(y))
            for g, ys in groups.items():
                parent = self.rates.get(g.split("/")[0], self.base)
                self.rates[g] = (sum(ys) + self.prior * parent) / (len(ys) + self.prior)
        return self

    @staticmethod
    def _key(row: dict, kind: str) -> str:
        return row["source"] if kind == "source" else f"{row['source']}/{row['category']}"

    def score(self, part: Part) -> np.ndarray:
        return np.array([self.rates.get(self._key(r, "group"), self.rates.get(r["source"], self.base))
                         for r in part.rows])


class SidecarMethod(Method):
    """The sidecar itself, trained on the split's train part only."""
    name = "sidecar"

    def __init__(self, signature: dict | None = None, sidecar: Sidecar | None = None, **hyperparams):
        self.sidecar = sidecar or Sidecar(signature=signature, **hyperparams)

    def fit(self, train: Part, val: Part) -> "SidecarMethod":
        self.sidecar.fit(train.feats, train.y, val.feats, val.y, groups=[r["source"] for r in train.rows])
        return self

    def score(self, part: Part) -> np.ndarray:
        return self.sidecar.decision_function(part.feats)

    def calibrate(self, val: Part) -> "SidecarMethod":
        return self  # the sidecar carries its own temperature/Platt scaling, fitted on the same val part

    def proba(self, part: Part) -> np.ndarray:
        return self.sidecar.predict_proba(part.feats)


BASELINES: tuple[type[Method], ...] = (NegEntropy, CategoryRate, TextTfidf, GlobalsLR, LayersLR, HiddenLR)

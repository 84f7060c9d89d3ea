"""The sidecar: P(knows) from one prompt-only capture. Checkpoints are tied to the model they were trained for."""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from torch import nn

from gate.config import Settings
from gate.engine.features import GLOBAL_FEATURES, LAYER_FEATURES, Features
from gate.engine.loading import model_slug

ROOT = Path(__file__).resolve().parent.parent


class SidecarMismatch(ValueError):
    """A checkpoint trained for another model (or other feature settings) than the one being served."""


def model_signature(engine) -> dict:
    """What a checkpoint must match for this engine: the model and the exact feature layout it reads."""
    fs = engine.settings.features
    return {"model_id": engine.loaded.model_id, "num_layers": engine.arch.num_layers,
            "hidden_size": engine.arch.hidden_size, "vocab_size": engine.arch.vocab_size,
            "layer_features": list(LAYER_FEATURES), "global_features": list(GLOBAL_FEATURES),
            "hidden_depths": [float(d) for d in fs.hidden_depths], "positions": int(fs.positions),
            "recall_band": [float(b) for b in fs.recall_band]}


def sidecar_dir(settings: Settings, model_id: str) -> Path:
    base = Path(settings.sidecar_dir).expanduser()
    return (base if base.is_absolute() else ROOT / base) / model_slug(model_id)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run tiny torch ops on one thread: on a busy CPU, intra-op threads spin and are ~30x slower here."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _logit_auroc(y: np.ndarray, s: np.ndarray) -> float:
    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else 0.5


class _DepthNet(nn.Module):
    """GRU over depth on the per-layer features, mean + last pooling, joined with the globals and the
    hidden-state read, MLP head to one logit."""

    def __init__(self, n_layer_feats: int, n_extra: int, hidden: int, head: int, dropout: float):
        super().__init__()
        self.gru = nn.GRU(n_layer_feats, hidden, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Sequential(nn.Linear(2 * hidden + n_extra, head), nn.GELU(), nn.Dropout(dropout),
                                  nn.Linear(head, 1))

    def forward(self, layer: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        seq, last = self.gru(self.drop(layer))
        pooled = torch.cat([seq.mean(1), last[-1], extra], dim=-1)
        return self.head(pooled).squeeze(-1)


class Sidecar:
    """Calibrated P(knows) from features of one prompt forward.

    Inputs are standardised with training statistics. The hidden-state vectors enter through a strongly
    regularised logistic read fitted out-of-fold (so the network never sees a read that memorised its own
    training rows); a GRU over depth reads the per-layer lens/MLP-write trajectory; a few seeds are averaged;
    a Platt scaling (temperature plus bias, on validation NLL) makes the output a probability — the bias is
    needed because class-balanced training moves the base rate to one half.
    """

    defaults = dict(gru_hidden=32, head=32, dropout=0.2, lr=3e-3, weight_decay=1e-2, epochs=60, patience=10,
                    batch_size=128, seeds=3, hidden_C=(0.001, 0.003, 0.01, 0.03), folds=5, clip=6.0)

    def __init__(self, signature: dict | None = None, **hyperparams):
        unknown = set(hyperparams) - set(self.defaults)
        if unknown:
            raise TypeError(f"unknown sidecar hyperparameters: {sorted(unknown)}")
        self.hp = {**self.defaults, **hyperparams}
        self.signature: dict = dict(signature or {})
        self.state: dict[str, np.ndarray] = {}
        self.nets: list[_DepthNet] = []

    # ---- preprocessing -------------------------------------------------------------------------------
    def _standardise(self, name: str, x: np.ndarray, fit: bool) -> np.ndarray:
        x = np.nan_to_num(x.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        if fit:
            self.state[f"{name}_mean"] = x.mean(0)
            self.state[f"{name}_std"] = x.std(0) + 1e-4
        z = (x - self.state[f"{name}_mean"]) / self.state[f"{name}_std"]
        return np.clip(z, -self.hp["clip"], self.hp["clip"])

    def _hidden_matrix(self, feats: Features, fit: bool = False) -> np.ndarray:
        return self._standardise("hidden", feats.hidden.reshape(len(feats.hidden), -1), fit)

    def _hidden_read(self, h: np.ndarray) -> np.ndarray:
        return h @ self.state["read_coef"] + self.state["read_bias"]

    def _fit_hidden_read(self, h_tr: np.ndarray, y_tr: np.ndarray, h_va: np.ndarray, y_va: np.ndarray,
                         seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Choose C on validation AUROC; return out-of-fold train logits and validation logits."""
        def lr(C: float) -> LogisticRegression:
            return LogisticRegression(C=C, class_weight="balanced", max_iter=500)
        best = max(self.hp["hidden_C"], key=lambda C: _logit_auroc(y_va, lr(C).fit(h_tr, y_tr).decision_function(h_va)))
        full = lr(best).fit(h_tr, y_tr)
        self.state["read_coef"], self.state["read_bias"] = full.coef_[0].astype(np.float32), full.intercept_.astype(np.float32)
        self.state["read_C"] = np.array(best)
        oof = np.zeros(len(y_tr), dtype=np.float32)
        for tr, te in StratifiedKFold(self.hp["folds"], shuffle=True, random_state=seed).split(h_tr, y_tr):
            oof[te] = lr(best).fit(h_tr[tr], y_tr[tr]).decision_function(h_tr[te])
        return oof, self._hidden_read(h_va).astype(np.float32)

    def _inputs(self, feats: Features, fit: bool = False, read: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_shapes(feats)
        layer = self._standardise("layer", feats.layer, fit)
        glob = self._standardise("globals", feats.globals, fit)
        if read is None:
            read = self._hidden_read(self._hidden_matrix(feats))
        extra = np.concatenate([glob, read[:, None] / 4.0], axis=1)  # read logits span a few units
        return torch.from_numpy(layer), torch.from_numpy(extra.astype(np.float32))

    def _check_shapes(self, feats: Features) -> None:
        sig = self.signature
        if not sig:
            return
        want = (sig["num_layers"], len(sig["layer_features"]))
        if feats.layer.shape[1:] != want or feats.globals.shape[1] != len(sig["global_features"]) \
                or feats.hidden.shape[1:] != (len(sig["hidden_depths"]), sig["hidden_size"]):
            raise SidecarMismatch(f"features of shape layer={feats.layer.shape[1:]} hidden={feats.hidden.shape[1:]} "
                                  f"do not fit the sidecar for {sig['model_id']} (layers×features {want})")

    # ---- training ------------------------------------------------------------------------------------
    def fit(self, train: Features, y_train: np.ndarray, val: Features, y_val: np.ndarray) -> "Sidecar":
        """Train on `train`; early-stop on validation AUROC; calibrate on validation NLL."""
        y_tr, y_va = np.asarray(y_train, np.float32), np.asarray(y_val, np.float32)
        if not (0 < y_tr.sum() < len(y_tr)):
            raise ValueError("training labels need both classes")
        self.state = {}
        h_tr = self._hidden_matrix(train, fit=True)
        oof, read_va = self._fit_hidden_read(h_tr, y_tr, self._hidden_matrix(val), y_va, seed=0)
        x_tr, e_tr = self._inputs(train, fit=True, read=oof)
        x_va, e_va = self._inputs(val, read=read_va)
        with _one_thread():
            self.nets = [self._train_one(x_tr, e_tr, y_tr, x_va, e_va, y_va, seed) for seed in range(self.hp["seeds"])]
            self._calibrate(self._raw_logits(x_va, e_va), y_va)
        return self

    def _train_one(self, x_tr, e_tr, y_tr, x_va, e_va, y_va, seed: int) -> _DepthNet:
        torch.manual_seed(seed)
        hp = self.hp
        net = _DepthNet(x_tr.shape[-1], e_tr.shape[-1], hp["gru_hidden"], hp["head"], hp["dropout"])
        opt = torch.optim.AdamW(net.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
        pos_weight = torch.tensor((len(y_tr) - y_tr.sum()) / max(y_tr.sum(), 1.0))  # class-balanced BCE
        y = torch.from_numpy(y_tr)
        gen = torch.Generator().manual_seed(seed)
        best, best_state, stale = -1.0, None, 0
        for _ in range(hp["epochs"]):
            net.train()
            for idx in torch.randperm(len(y), generator=gen).split(hp["batch_size"]):
                loss = F.binary_cross_entropy_with_logits(net(x_tr[idx], e_tr[idx]), y[idx], pos_weight=pos_weight)
                opt.zero_grad()
                loss.backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                score = _logit_auroc(y_va, net(x_va, e_va).numpy())
            if score > best:
                best, best_state, stale = score, {k: v.clone() for k, v in net.state_dict().items()}, 0
            else:
                stale += 1
                if stale >= hp["patience"]:
                    break
        net.load_state_dict(best_state)
        return net.eval()

    def _raw_logits(self, x: torch.Tensor, e: torch.Tensor) -> np.ndarray:
        with torch.no_grad(), _one_thread():
            return np.mean([net(x, e).numpy() for net in self.nets], axis=0)

    def _calibrate(self, logits: np.ndarray, y: np.ndarray) -> None:
        """Platt scaling: fit p = sigmoid(a·logit + b) on validation NLL (a = 1/temperature)."""
        z, t = torch.from_numpy(logits.astype(np.float32)), torch.from_numpy(y)
        ab = torch.tensor([1.0, 0.0], requires_grad=True)
        opt = torch.optim.LBFGS([ab], lr=0.5, max_iter=200)

        def closure():
            opt.zero_grad()
            loss = F.binary_cross_entropy_with_logits(ab[0] * z + ab[1], t)
            loss.backward()
            return loss
        opt.step(closure)
        self.state["platt"] = ab.detach().numpy().astype(np.float32)

    # ---- inference -----------------------------------------------------------------------------------
    def decision_function(self, feats: Features) -> np.ndarray:
        """Calibrated logit of P(knows), shape [B]."""
        if not self.nets:
            raise RuntimeError("sidecar is not fitted")
        a, b = self.state["platt"]
        return a * self._raw_logits(*self._inputs(feats)) + b

    def predict_proba(self, feats: Features) -> np.ndarray:
        """Calibrated P(knows), shape [B]."""
        return 1.0 / (1.0 + np.exp(-self.decision_function(feats).astype(np.float64)))

    # ---- persistence ---------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """config.json (hyperparameters, model signature) + weights.npz (no pickle)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {f"state.{k}": v for k, v in self.state.items()}
        for i, net in enumerate(self.nets):
            arrays.update({f"net{i}.{k}": v.numpy() for k, v in net.state_dict().items()})
        np.savez(directory / "weights.npz", **arrays)
        meta = {"format": 1, "hyperparams": self.hp, "signature": self.signature, "nets": len(self.nets),
                "dims": {"layer_feats": int(self.state["layer_mean"].shape[-1]),
                         "extra": int(self.state["globals_mean"].shape[-1]) + 1}}
        (directory / "config.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, directory: str | Path, signature: dict | None = None) -> "Sidecar":
        """Load a checkpoint; refuse (SidecarMismatch) if it was trained for a different model or layout."""
        directory = Path(directory)
        meta = json.loads((directory / "config.json").read_text())
        saved = meta["signature"]
        if signature is not None:
            diff = sorted(k for k in set(saved) | set(signature) if saved.get(k) != signature.get(k))
            if diff:
                raise SidecarMismatch(
                    f"sidecar checkpoint {directory} was trained for model {saved.get('model_id')!r}, but the engine "
                    f"runs {signature.get('model_id')!r}; differing: " +
                    ", ".join(f"{k} ({saved.get(k)!r} vs {signature.get(k)!r})" for k in diff[:4]) +
                    ". Train a sidecar for this model (python -m training.build_dataset, then python -m training.train).")
        hp = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["hyperparams"].items()}
        sc = cls(signature=saved, **hp)
        with np.load(directory / "weights.npz", allow_pickle=False) as z:
            sc.state = {k[6:]: z[k] for k in z.files if k.startswith("state.")}
            for i in range(meta["nets"]):
                net = _DepthNet(meta["dims"]["layer_feats"], meta["dims"]["extra"], hp["gru_hidden"], hp["head"],
                                hp["dropout"])
                prefix = f"net{i}."
                net.load_state_dict({k[len(prefix):]: torch.from_numpy(z[k]) for k in z.files if k.startswith(prefix)})
                sc.nets.append(net.eval())
        return sc


def load_for(engine) -> Sidecar | None:
    """The shipped/trained sidecar for this engine's model; None if there is none; SidecarMismatch if it
    exists but was trained for another model or feature layout."""
    directory = sidecar_dir(engine.settings, engine.loaded.model_id)
    if not (directory / "config.json").exists():
        return None
    return Sidecar.load(directory, model_signature(engine))

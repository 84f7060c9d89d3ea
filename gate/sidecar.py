"""The sidecar: P(knows) from one prompt-only capture. Checkpoints are tied to the model they were trained for."""
from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from threadpoolctl import ThreadpoolController
from torch import nn

from gate.config import Settings
from gate.engine.features import GLOBAL_FEATURES, LAYER_FEATURES, Features
from gate.engine.loading import model_slug

ROOT = Path(__file__).resolve().parent.parent
FILE = "weights.npz"  # the sidecar's arrays, next to config.json
log = logging.getLogger(__name__)


class SidecarMismatch(ValueError):
    """A checkpoint trained for another model (or other feature settings) than the one being served."""


# The dtype the features were computed in. Measured on the default model (bench/bench_dtype.py,
# data/smollm2-135m-instruct/README.md): a sidecar trained on float32 features keeps its ranking and calibration
# on bfloat16 features, so a mismatch is a warning, not a refusal. Datasets and checkpoints from before the dtype
# was recorded were all computed in float32.
DTYPE_KEY = "dtype"
_UNRECORDED_DTYPE = "float32"


def model_signature(engine) -> dict:
    """What a checkpoint must match for this engine: the model and the exact feature layout it reads, plus the
    dtype its features are computed in (checked loosely: see DTYPE_KEY)."""
    fs = engine.features
    return {"model_id": engine.model_id, "num_layers": engine.shape.num_layers,
            "hidden_size": engine.shape.hidden_size, "vocab_size": engine.shape.vocab_size,
            "layer_features": list(LAYER_FEATURES), "global_features": list(GLOBAL_FEATURES),
            "hidden_depths": [float(d) for d in fs.hidden_depths], "positions": int(fs.positions),
            # only where there is a message read: checkpoints from before it read none and still match
            **({"message_depths": [float(d) for d in fs.message_depths]} if fs.message_depths else {}),
            "recall_band": [float(b) for b in fs.recall_band],
            DTYPE_KEY: str(engine.dtype).removeprefix("torch.")}


def recorded_dtype(signature: dict) -> str:
    """The dtype a signature's features were computed in (float32 where it predates the record)."""
    return signature.get(DTYPE_KEY, _UNRECORDED_DTYPE)


def _check_dtype(directory: Path, saved: dict, signature: dict) -> None:
    trained, served = (recorded_dtype(sig) for sig in (saved, signature))
    if trained != served:
        log.warning("sidecar %s was trained on %s features and the engine computes them in %s: P(knows) moves a "
                    "little (measured in data/smollm2-135m-instruct/README.md); set model.dtype: %s to match it",
                    directory, trained, served, trained)


def check_signature(saved: dict, signature: dict | None, directory: Path) -> None:
    """Refuse a checkpoint made for another model or feature layout, naming both; a dtype mismatch only warns."""
    if signature is None:
        return
    _check_dtype(directory, saved, signature)
    diff = sorted(k for k in (set(saved) | set(signature)) - {DTYPE_KEY} if saved.get(k) != signature.get(k))
    if diff:
        raise SidecarMismatch(
            f"sidecar checkpoint {directory} was trained for model {saved.get('model_id')!r}, but the engine "
            f"runs {signature.get('model_id')!r}" + (" with another feature layout" if saved.get("model_id") ==
                                                     signature.get("model_id") else "") + "; differing: " +
            ", ".join(f"{k} ({saved.get(k)!r} vs {signature.get(k)!r})" for k in diff[:4]) +
            ". Train a sidecar for this model (python -m training.build_dataset, then python -m training.train).")


def data_dir(slug: str) -> Path:
    """The shipped dataset, metrics and figures of a model: read by training and by the UI's Evaluation tab."""
    return ROOT / "data" / slug


def sidecar_dir(settings: Settings, model_id: str) -> Path:
    base = Path(settings.sidecar_dir).expanduser()
    return (base if base.is_absolute() else ROOT / base) / model_slug(model_id)


@cache
def _threadpools() -> ThreadpoolController:
    """The BLAS / OpenMP libraries loaded, found once: a fresh `threadpool_limits` scans them on every call
    (~3 ms, more than a served turn's whole P(knows))."""
    return ThreadpoolController()


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run small torch/BLAS work on one thread: on a busy shared CPU, spinning intra-op threads made
    sidecar training ~30x (torch) and the logistic fits ~50x (BLAS) slower than one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with _threadpools().limit(limits=1):
            yield
    finally:
        torch.set_num_threads(before)


def residual_reads(feats: Features) -> np.ndarray:
    """The residual stream as both heads read it, [B, (H + M)·d]: at the final prompt position (the configured
    depths) and averaged over the latest user message (the message depths)."""
    return np.concatenate([feats.hidden.reshape(len(feats.hidden), -1),
                           feats.message.reshape(len(feats.message), -1)], axis=1)


def _logit_auroc(y: np.ndarray, s: np.ndarray) -> float:
    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else 0.5


def _logistic(C: float, x: np.ndarray, y: np.ndarray) -> LogisticRegression:
    return LogisticRegression(C=C, class_weight="balanced", max_iter=500).fit(x, y)


def _transfer_aurocs(x: np.ndarray, y: np.ndarray, groups: np.ndarray | None, grid: tuple[float, ...],
                     min_positives: int) -> np.ndarray | None:
    """Mean AUROC on each group (with ≥ min_positives known answers and some unknown) of a fit on the other
    groups, per C: how well each strength transfers to an unseen source. None with fewer than two such groups.
    A random validation part favours weaker regularisation that also reads the training sources' topics."""
    if groups is None:
        return None
    groups = np.asarray(groups)
    held = [g for g in np.unique(groups) if min_positives <= y[groups == g].sum() < (groups == g).sum()]
    if len(held) < 2:
        return None
    return np.mean([[_logit_auroc(y[groups == g], _logistic(C, x[groups != g], y[groups != g])
                                  .decision_function(x[groups == g])) for C in grid] for g in held], axis=0)


class _DepthNet(nn.Module):
    """GRU over depth on the per-layer features, mean + last pooling, joined with the globals, MLP head."""

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
    """Calibrated P(knows) from the features of one prompt forward.

    Up to three reads of the model's internals (`reads`), each standardised with training statistics:
    - `hidden`: a strongly regularised logistic read of the residual stream at the configured depths, and
      averaged over the latest user message where the model has a message read; C is chosen by how well it
      transfers to a training source left out (given the sources), else on validation AUROC;
    - `layers`: the same kind of read of the per-layer lens / MLP-write trajectory plus the global scalars;
    - `gru`: a GRU over depth on that trajectory plus the globals (a few seeds, class-balanced BCE, AdamW,
      early stopping on validation AUROC).
    One logistic fit on validation NLL then weighs the reads' logits and calibrates the sum
    (p = sigmoid(a·hidden + b·layers + c)): Platt scaling with a few inputs. Temperature alone would not do,
    because class-balanced training moves the base rate to one half.
    The default reads were chosen by leave-one-source-out AUROC (training/select_reads.py; data/<model>/
    selection.md): on the default model, with the message read, the residual alone transfers best to held-out QA
    sources (0.797 mean over six; with the trajectory 0.796, with the GRU 0.795). A checkpoint keeps the
    reads it was trained with (the Qwen one: `hidden + layers`).
    """

    defaults = dict(reads=("hidden",), gru_hidden=32, head=32, dropout=0.2, lr=3e-3, weight_decay=1e-2,
                    epochs=60, patience=10, batch_size=128, seeds=3, clip=6.0,
                    hidden_C=(0.0001, 0.0003, 0.001, 0.003, 0.01), min_group_positives=10)
    READS = ("hidden", "layers", "gru")  # linear read of the residual, linear read of the trajectory, GRU over it

    def __init__(self, signature: dict | None = None, **hyperparams):
        unknown = set(hyperparams) - set(self.defaults)
        if unknown:
            raise TypeError(f"unknown sidecar hyperparameters: {sorted(unknown)}")
        self.hp = {**self.defaults, **hyperparams}
        if not self.hp["reads"] or set(self.hp["reads"]) - set(self.READS):
            raise ValueError(f"reads must be a non-empty subset of {self.READS}, got {self.hp['reads']}")
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

    def _linear_matrix(self, read: str, feats: Features, fit: bool = False) -> np.ndarray:
        """The standardised inputs of a linear read: the residual stream, or the per-layer trajectory + globals."""
        x = (residual_reads(feats) if read == "hidden" else
             np.concatenate([feats.layer.reshape(len(feats.layer), -1), feats.globals], axis=1))
        return self._standardise(read, x, fit)

    def _fit_linear_read(self, read: str, train: Features, y_tr: np.ndarray, val: Features, y_va: np.ndarray,
                         groups: np.ndarray | None) -> None:
        """Class-balanced logistic read (strong regularisation: few positives). C is the one that transfers best
        to a training source left out of the fit (mean AUROC over the sources with enough known answers) where
        `groups` names them; else the best on validation AUROC."""
        h_tr, h_va = self._linear_matrix(read, train, fit=True), self._linear_matrix(read, val)
        grid = self.hp["hidden_C"]
        transfer = _transfer_aurocs(h_tr, y_tr, groups, grid, self.hp["min_group_positives"])
        if transfer is None:
            best = max((_logistic(C, h_tr, y_tr) for C in grid),
                       key=lambda m: _logit_auroc(y_va, m.decision_function(h_va)))
        else:
            best = _logistic(grid[int(np.argmax(transfer))], h_tr, y_tr)
        self.state[f"{read}_coef"] = best.coef_[0].astype(np.float32)
        self.state[f"{read}_bias"] = best.intercept_.astype(np.float32)

    def _net_inputs(self, feats: Features, fit: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_shapes(feats)
        layer = self._standardise("layer", feats.layer, fit)
        glob = self._standardise("globals", feats.globals, fit)
        return torch.from_numpy(layer), torch.from_numpy(glob)

    def _check_shapes(self, feats: Features) -> None:
        sig = self.signature
        if not sig:
            return
        want = (sig["num_layers"], len(sig["layer_features"]))
        bad = feats.hidden.shape[1:] != (len(sig["hidden_depths"]), sig["hidden_size"]) \
            or feats.message.shape[1:] != (len(sig.get("message_depths", [])), sig["hidden_size"])
        if set(self.hp["reads"]) - {"hidden"}:  # only reads of the trajectory touch it (a served turn's is lazy)
            bad = bad or feats.layer.shape[1:] != want or feats.globals.shape[1] != len(sig["global_features"])
        if bad:
            raise SidecarMismatch(f"features of shape layer={feats.layer.shape[1:]} hidden={feats.hidden.shape[1:]} "
                                  f"message={feats.message.shape[1:]} do not fit the sidecar for {sig['model_id']} (layers×features {want})")

    # ---- training ------------------------------------------------------------------------------------
    def fit(self, train: Features, y_train: np.ndarray, val: Features, y_val: np.ndarray,
            groups: np.ndarray | None = None) -> "Sidecar":
        """Train the reads on `train`; early-stop and calibrate on `val`. `groups` (each training row's source)
        lets the linear reads choose their regularisation by leave-one-source-out transfer."""
        y_tr, y_va = np.asarray(y_train, np.float32), np.asarray(y_val, np.float32)
        if not (0 < y_tr.sum() < len(y_tr)) or not (0 < y_va.sum() < len(y_va)):
            raise ValueError("training and validation labels both need both classes")
        self.state = {}
        with _one_thread():
            self._check_shapes(train)
            for read in self.hp["reads"]:
                if read != "gru":
                    self._fit_linear_read(read, train, y_tr, val, y_va, groups)
            if "gru" in self.hp["reads"]:
                x_tr, e_tr = self._net_inputs(train, fit=True)
                x_va, e_va = self._net_inputs(val)
                self.nets = [self._train_one(x_tr, e_tr, y_tr, x_va, e_va, y_va, seed)
                             for seed in range(self.hp["seeds"])]
            self._calibrate(self._components(val), y_va)
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

    def _components(self, feats: Features) -> np.ndarray:
        """[B, reads]: each read's logit (the GRU's is its ensemble mean), in `reads` order."""
        self._check_shapes(feats)
        cols = []
        with torch.no_grad(), _one_thread():
            for read in self.hp["reads"]:
                if read == "gru":
                    inputs = self._net_inputs(feats)  # standardised once for the whole ensemble
                    cols.append(np.mean([net(*inputs).numpy() for net in self.nets], axis=0))
                else:
                    cols.append(self._linear_matrix(read, feats) @ self.state[f"{read}_coef"] + self.state[f"{read}_bias"])
        return np.stack(cols, axis=1).astype(np.float32)

    def _calibrate(self, comps: np.ndarray, y: np.ndarray) -> None:
        """Weights and bias of the reads' logits by validation NLL (unregularised, no class balancing)."""
        lr = LogisticRegression(C=1e4, max_iter=1000).fit(comps, y)
        self.state["combine"] = np.append(lr.coef_[0], lr.intercept_).astype(np.float32)

    # ---- inference -----------------------------------------------------------------------------------
    def decision_function(self, feats: Features) -> np.ndarray:
        """Calibrated logit of P(knows), shape [B]."""
        if "combine" not in self.state:
            raise RuntimeError("sidecar is not fitted")
        w = self.state["combine"]
        return self._components(feats) @ w[:-1] + w[-1]

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
        np.savez(directory / FILE, **arrays)
        meta = {"format": 1, "hyperparams": self.hp, "signature": self.signature, "nets": len(self.nets),
                "dims": {"layer_feats": int(self.state["layer_mean"].shape[-1]),
                         "extra": int(self.state["globals_mean"].shape[-1])} if self.nets else {}}
        (directory / "config.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, directory: str | Path, signature: dict | None = None) -> "Sidecar":
        """Load a checkpoint; refuse (SidecarMismatch) if it was trained for a different model or layout."""
        directory = Path(directory)
        meta = json.loads((directory / "config.json").read_text())
        saved = meta["signature"]
        check_signature(saved, signature, directory)
        hp = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["hyperparams"].items()}
        sc = cls(signature=saved, **hp)
        with np.load(directory / FILE, allow_pickle=False) as z:
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
    directory = sidecar_dir(engine.settings, engine.model_id)
    if not (directory / "config.json").exists():
        return None
    return Sidecar.load(directory, model_signature(engine))

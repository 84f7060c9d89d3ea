"""Splits: stratified train/val/test within the sources, and a cross-domain split that holds out whole
sources/categories (the model evaluated on it never sees them in training)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

# Held out for the cross-domain split: a second source and Red categories of different kinds (capitals,
# music, sports, news years), so train and test differ in topic and in label rate.
HELDOUT = ("simpleqa", "red/worldcapitals", "red/uscapitals", "red/music", "red/sports", "red/2016")


def group_of(row: dict) -> str:
    return f"{row['source']}/{row['category']}"


def strata_of(rows: list[dict], labels, min_count: int = 2) -> np.ndarray:
    """Source x label strata; a stratum with fewer than `min_count` members falls back to its label alone."""
    full = np.array([f"{r['source']}|{y}" for r, y in zip(rows, labels)])
    keys, counts = np.unique(full, return_counts=True)
    small = set(keys[counts < min_count])
    return np.array([f"*|{s.split('|')[1]}" if s in small else s for s in full])


def stratified(idx: np.ndarray, strata: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split of `idx`; strata too small to split are merged by label, or dropped from stratification."""
    keys, counts = np.unique(strata[idx], return_counts=True)
    small = set(keys[counts < 2])
    strat = np.array([f"*|{s.split('|')[1]}" if s in small else s for s in strata[idx]])
    if np.unique(strat, return_counts=True)[1].min() < 2:
        strat = None
    a, b = train_test_split(idx, test_size=test_size, random_state=seed, stratify=strat)
    return np.sort(a), np.sort(b)


def by_id(idx: np.ndarray, strata: np.ndarray, ids: list[str], share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split `idx` into (rest, held) by a hash of each row's id, `share` of every stratum held: which rows are
    held depends only on their ids, their stratum's members and `seed`, never on the rows' order or on other
    strata, so a rebuild that reorders rows or adds another source leaves an evaluation's inner validation parts
    as they were."""
    held: list[int] = []
    for key in np.unique(strata[idx]):
        members = sorted(idx[strata[idx] == key], key=lambda i: _rank(ids[i], seed))
        held += members[:int(round(share * len(members)))]
    mask = np.isin(idx, held)
    return np.sort(idx[~mask]), np.sort(idx[mask])


def folds_by_id(strata: np.ndarray, ids: list[str], folds: int, seed: int) -> np.ndarray:
    """Each row's cross-validation fold, stratified, from a hash of its id (order-independent like `by_id`)."""
    fold = np.zeros(len(ids), dtype=int)
    for key in np.unique(strata):
        members = sorted(np.flatnonzero(strata == key), key=lambda i: _rank(ids[i], seed))
        fold[members] = np.arange(len(members)) % folds
    return fold


def _rank(key: str, seed: int) -> bytes:
    return hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()


def random_split(rows: list[dict], seed: int = 0, val: float = 0.15, test: float = 0.15) -> dict[str, list[int]]:
    """Train/val/test stratified by source x label."""
    strata = strata_of(rows, [r["label"] for r in rows])
    idx = np.arange(len(rows))
    rest, te = stratified(idx, strata, test, seed)
    tr, va = stratified(rest, strata, val / (1 - test), seed)
    return {"train": tr.tolist(), "val": va.tolist(), "test": te.tolist()}


def cross_domain_split(rows: list[dict], heldout: tuple[str, ...] = HELDOUT, seed: int = 0,
                       val: float = 0.15) -> dict[str, list[int]]:
    """Test = every example of a held-out source ('simpleqa') or source/category ('red/music');
    train/val = a stratified split of everything else."""
    held = _held(rows, heldout)
    if held.all() or not held.any():
        raise ValueError(f"held-out groups {heldout} must leave both a train and a test part")
    return _cross_domain_parts(rows, held, heldout, seed, val)


def _held(rows: list[dict], heldout: tuple[str, ...] | list[str]) -> np.ndarray:
    return np.array([r["source"] in heldout or group_of(r) in heldout for r in rows], dtype=bool)


def _cross_domain_parts(rows: list[dict], held: np.ndarray, heldout, seed: int, val: float) -> dict[str, list[int]]:
    strata = strata_of(rows, [r["label"] for r in rows])
    tr, va = stratified(np.flatnonzero(~held), strata, val, seed) if (~held).any() else (np.array([], int),) * 2
    return {"train": tr.tolist(), "val": va.tolist(), "test": np.flatnonzero(held).tolist(),
            "heldout": list(heldout)}


def make_splits(rows: list[dict], seed: int = 0) -> dict[str, dict]:
    """Both splits, keyed by example id so they survive a rebuild that reorders rows."""
    ids = [r["id"] for r in rows]
    named = {"random": random_split(rows, seed), "cross_domain": cross_domain_split(rows, seed=seed)}
    return {name: {k: ([ids[i] for i in v] if k != "heldout" else v) for k, v in s.items()}
            for name, s in named.items()}


def extend_splits(splits: dict[str, dict], rows: list[dict], seed: int = 0) -> dict[str, dict]:
    """Saved splits (by id) plus the rows they have never seen (a rebuild added sources), split among themselves
    the same way. Every row already assigned keeps its part, so results on those rows stay comparable and a
    model trained only on them (the sidecar, when the new rows are chat turns) is unchanged."""
    assigned = {i for s in splits.values() for k, v in s.items() if k != "heldout" for i in v}
    new = [r for r in rows if r["id"] not in assigned]
    if not new:
        return splits
    heldout = splits["cross_domain"]["heldout"]
    parts = {"random": random_split(new, seed),
             "cross_domain": _cross_domain_parts(new, _held(new, heldout), heldout, seed, val=0.15)}
    return {name: {k: (v + [new[i]["id"] for i in parts[name][k]] if k != "heldout" else v) for k, v in s.items()}
            for name, s in splits.items()}


def save_splits(path: Path, splits: dict) -> None:
    path.write_text(json.dumps(splits))


def load_splits(path: Path, rows: list[dict]) -> dict[str, dict[str, np.ndarray]]:
    """Splits as row indices into `rows` (ids absent from `rows`, e.g. after --limit, are dropped)."""
    pos = {r["id"]: i for i, r in enumerate(rows)}
    raw = json.loads(path.read_text())
    return {name: {k: np.array([pos[i] for i in v if i in pos], dtype=int) for k, v in s.items() if k != "heldout"}
            for name, s in raw.items()}

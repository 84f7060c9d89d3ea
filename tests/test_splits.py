"""Splits never overlap, and the cross-domain train part contains no held-out source or category."""
from __future__ import annotations

import random

import numpy as np

from training.splits import (HELDOUT, by_id, cross_domain_split, extend_splits, folds_by_id, group_of, load_splits,
                             make_splits, random_split, save_splits, strata_of)


def fake_rows(n: int = 600) -> list[dict]:
    rng = random.Random(0)
    cats = [("red", "general"), ("red", "music"), ("red", "worldcapitals"), ("red", "elements"), ("simpleqa", "Art")]
    rows = []
    for i in range(n):
        src, cat = rng.choice(cats)
        rows.append({"id": f"x{i}", "source": src, "category": cat, "label": int(rng.random() < 0.2)})
    return rows


def test_random_split_partitions_and_stratifies():
    rows = fake_rows()
    s = random_split(rows, seed=1)
    parts = [set(s[k]) for k in ("train", "val", "test")]
    assert sum(map(len, parts)) == len(rows) and set.union(*parts) == set(range(len(rows)))
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    rate = np.mean([r["label"] for r in rows])
    for k in ("val", "test"):
        assert abs(np.mean([rows[i]["label"] for i in s[k]]) - rate) < 0.04


def test_cross_domain_train_never_sees_test_groups():
    rows = fake_rows()
    s = cross_domain_split(rows)
    train_groups = {group_of(rows[i]) for i in s["train"] + s["val"]}
    test_groups = {group_of(rows[i]) for i in s["test"]}
    assert train_groups and test_groups and not train_groups & test_groups
    assert all(rows[i]["source"] in HELDOUT or group_of(rows[i]) in HELDOUT for i in s["test"])
    assert not set(s["train"]) & set(s["val"])


def test_saved_splits_map_back_by_id(tmp_path):
    rows = fake_rows()
    splits = make_splits(rows)
    save_splits(tmp_path / "splits.json", splits)
    shuffled = rows[::-1]
    loaded = load_splits(tmp_path / "splits.json", shuffled)
    assert [shuffled[i]["id"] for i in loaded["random"]["test"]] == splits["random"]["test"]


def test_extended_splits_keep_every_assignment_and_place_the_new_rows():
    """A rebuild that adds rows: the saved parts stay as they were, the new rows are split the same way."""
    rows = fake_rows()
    splits = make_splits(rows[:500])
    more = extend_splits(splits, rows)
    for name, split in splits.items():
        for part, ids in split.items():
            assert more[name][part][:len(ids)] == ids
    assert sorted(i for part in ("train", "val", "test") for i in more["random"][part]) == sorted(r["id"] for r in rows)
    new = rows[500:]
    assert all({r["id"] for r in new} & set(more["random"][part]) for part in ("train", "val", "test"))
    held = {r["id"] for r in new if r["source"] in HELDOUT or group_of(r) in HELDOUT}
    assert held and held == set(more["cross_domain"]["test"]) - set(splits["cross_domain"]["test"])
    assert extend_splits(more, rows) is more


def test_inner_draws_depend_on_ids_not_on_order_or_other_rows():
    """The evaluations' inner validation parts and CV folds: the same rows are held however the rows are ordered
    and whatever other sources' rows are added; every stratum gives its share; another seed draws other rows."""
    rows = fake_rows()
    held_ids = lambda rs, seed=0: {rs[i]["id"] for i in by_id(np.arange(len(rs)), strata_of(rs, [r["label"] for r in rs]),
                                                              [r["id"] for r in rs], 0.15, seed)[1]}
    shuffled = rows[::-1]
    grown = shuffled + [{**r, "id": f"new{i}", "source": "chat"} for i, r in enumerate(fake_rows(200))]
    base = held_ids(rows)
    assert base == held_ids(shuffled) and held_ids(rows, seed=1) != base
    assert base == held_ids(grown) - {f"new{i}" for i in range(200)}  # a new source's rows shift nothing
    assert abs(len(base) / len(rows) - 0.15) < 0.02
    strata = strata_of(rows, [r["label"] for r in rows])
    for key in set(strata):
        members = [r["id"] for r, s in zip(rows, strata) if s == key]
        assert abs(len(base & set(members)) - 0.15 * len(members)) <= 0.5
    fold = folds_by_id(strata, [r["id"] for r in rows], 5, 0)
    back = folds_by_id(strata[::-1], [r["id"] for r in shuffled], 5, 0)[::-1]
    assert (fold == back).all() and np.bincount(fold).min() >= 110

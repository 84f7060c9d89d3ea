"""Train the sidecar on the random split's train part (val for early stopping and calibration) and save it
to ckpts/<model-slug>/, where the runtime finds it. Works from saved features only: no model is loaded."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from gate.config import load_settings
from gate.engine.loading import model_slug
from gate.sidecar import Sidecar, sidecar_dir
from training.splits import load_splits, make_splits, save_splits
from training.store import data_dir, load_dataset


def ensure_splits(directory: Path, rows: list[dict], seed: int, resplit: bool = False) -> dict:
    """Splits are made once and saved, so training and evaluation always agree."""
    path = directory / "splits.json"
    if resplit or not path.exists():
        save_splits(path, make_splits(rows, seed))
    return load_splits(path, rows)


def main(argv: list[str] | None = None) -> Sidecar:
    ap = argparse.ArgumentParser(prog="python -m training.train", description=__doc__)
    ap.add_argument("--config", help="gate.yaml (its model.id and sidecar_dir pick the folders)")
    ap.add_argument("--data", type=Path, help="dataset folder (default: data/<model-slug>)")
    ap.add_argument("--out", type=Path, help="checkpoint folder (default: <sidecar_dir>/<model-slug>)")
    ap.add_argument("--seed", type=int, default=0, help="split seed (default: %(default)s)")
    ap.add_argument("--resplit", action="store_true", help="remake splits.json even if it exists")
    ap.add_argument("--seeds", type=int, default=Sidecar.defaults["seeds"], help="ensemble size (default: %(default)s)")
    args = ap.parse_args(argv)

    settings = load_settings(args.config)
    directory = args.data or data_dir(model_slug(settings.model.id))
    rows, feats, meta = load_dataset(directory)
    y = np.array([r["label"] for r in rows])
    split = ensure_splits(directory, rows, args.seed, args.resplit)["random"]
    t0 = time.perf_counter()
    sc = Sidecar(signature=meta["signature"], seeds=args.seeds).fit(
        feats[split["train"]], y[split["train"]], feats[split["val"]], y[split["val"]])
    out = args.out or sidecar_dir(settings, meta["signature"]["model_id"])
    sc.save(out)
    for part in ("val", "test"):
        idx = split[part]
        print(f"{part}: AUROC {roc_auc_score(y[idx], sc.predict_proba(feats[idx])):.3f} (n={len(idx)}, "
              f"positives={int(y[idx].sum())})")
    print(f"trained in {time.perf_counter() - t0:.1f}s on {len(split['train'])} examples; saved {out}")
    return sc


if __name__ == "__main__":
    main()

"""Train the sidecar (P(knows), on the knowledge questions) and the applicability head (P(factual), on every
turn) on the random split's train part (val for early stopping and calibration) and save both to
ckpts/<model-slug>/, where the runtime finds them. Works from saved features only: no model is loaded."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from gate.applicability import Applicability
from gate.sidecar import Sidecar, sidecar_dir
from training.splits import extend_splits, load_splits, make_splits, save_splits
from training.store import dataset_folder, dataset_parser, is_factual, load_dataset, step_settings, teaches_knows


def ensure_splits(directory: Path, rows: list[dict], seed: int, resplit: bool = False) -> dict:
    """Splits are made once and saved, so training and evaluation always agree; rows added by a rebuild are
    split among themselves and appended, the others keep their parts (`--resplit` remakes them all)."""
    path = directory / "splits.json"
    if resplit or not path.exists():
        save_splits(path, make_splits(rows, seed))
    else:
        saved = json.loads(path.read_text())
        extended = extend_splits(saved, rows, seed)
        if extended is not saved:
            save_splits(path, extended)
    return load_splits(path, rows)


def checkpoint_reads(directory: Path) -> list[str] | None:
    """The reads of the sidecar already saved in `directory` (None if there is none): retraining a model keeps
    the reads chosen for it (the Qwen checkpoint reads `hidden + layers`, the default model `hidden`)."""
    config = directory / "config.json"
    return json.loads(config.read_text())["hyperparams"]["reads"] if config.exists() else None


def main(argv: list[str] | None = None) -> Sidecar:
    ap = dataset_parser("python -m training.train", __doc__)
    ap.add_argument("--out", type=Path, help="checkpoint folder (default: <sidecar_dir>/<model-slug>)")
    ap.add_argument("--seed", type=int, default=0, help="split seed (default: %(default)s)")
    ap.add_argument("--resplit", action="store_true", help="remake splits.json even if it exists")
    ap.add_argument("--seeds", type=int, default=Sidecar.defaults["seeds"], help="ensemble size (default: %(default)s)")
    ap.add_argument("--reads", nargs="+", choices=Sidecar.READS,
                    help="the sidecar's reads (default: those of the checkpoint already in the output folder, chosen "
                         "for that model by training.select_reads; else " + " + ".join(Sidecar.defaults["reads"]) + ")")
    args = ap.parse_args(argv)

    settings = step_settings(args)
    directory = dataset_folder(args)
    rows, feats, meta = load_dataset(directory)
    factual = np.array([is_factual(r) for r in rows])
    labelled = np.array([teaches_knows(r) for r in rows])
    y = np.array([r["label"] if f else 0 for r, f in zip(rows, factual)], dtype=int)
    split = ensure_splits(directory, rows, args.seed, args.resplit)["random"]
    knowledge = {k: v[labelled[v]] for k, v in split.items()}
    out = args.out or sidecar_dir(settings, meta["signature"]["model_id"])
    reads = tuple(args.reads or checkpoint_reads(out) or Sidecar.defaults["reads"])
    t0 = time.perf_counter()
    sources = np.array([r["source"] for r in rows])
    sc = Sidecar(signature=meta["signature"], seeds=args.seeds, reads=reads).fit(
        feats[knowledge["train"]], y[knowledge["train"]], feats[knowledge["val"]], y[knowledge["val"]],
        groups=sources[knowledge["train"]])
    head = Applicability(meta["signature"]).fit(feats[split["train"]], factual[split["train"]],
                                                feats[split["val"]], factual[split["val"]], groups=sources[split["train"]])
    sc.save(out)
    head.save(out)
    for part in ("val", "test"):
        idx, all_idx = knowledge[part], split[part]
        print(f"{part}: P(knows) AUROC {roc_auc_score(y[idx], sc.predict_proba(feats[idx])):.3f} (n={len(idx)}, "
              f"positives={int(y[idx].sum())}); P(factual) AUROC "
              f"{roc_auc_score(factual[all_idx], head.predict_proba(feats[all_idx])):.3f} (n={len(all_idx)})")
    print(f"trained in {time.perf_counter() - t0:.1f}s on {len(split['train'])} examples (reads: {' + '.join(reads)}); "
          f"saved {out}")
    return sc


if __name__ == "__main__":
    main()

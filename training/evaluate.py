"""Evaluate the sidecar against every baseline from saved features alone (no model is loaded).

For each split (random test; cross-domain test on held-out sources/categories; 5-fold cross-validation over
everything) and each source: AUROC with bootstrap intervals, AUPRC, ECE (10 bins), Brier, positive rate, and
AUROC within categories; risk-coverage of the model's own correctness and AURC; recommended bands. Writes
metrics.json, metrics.md and figures/*.png next to the dataset.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score
from threadpoolctl import threadpool_limits

from gate.sidecar import Sidecar, SidecarMismatch, sidecar_dir
from training import band_sweep, evaluate_applicability
from training.baselines import BASELINES, Method, Part, SidecarMethod
from training.metrics import auroc, bootstrap_auroc, ece, mean_over, risk_coverage, within_category_auroc
from training.store import dataset_folder, dataset_parser, load_dataset, step_settings, teaches_knows
from training.splits import by_id, folds_by_id, load_splits, strata_of
from training.train import ensure_splits

DEFAULT_BANDS = (0.4, 0.7)


def block(rows: list[dict], y: np.ndarray, s: np.ndarray, p: np.ndarray, boot: int, min_each: int) -> dict:
    """All metrics of one method on one evaluated set."""
    cov, risk = risk_coverage(y, p)
    answered = p >= 0.5
    return {"n": int(len(y)), "positives": int(y.sum()), "pos_rate": float(y.mean()),
            "auroc": auroc(y, s), "auroc_ci95": bootstrap_auroc(y, s, boot),
            "auprc": float(average_precision_score(y, s)) if y.any() else float("nan"),
            "ece": ece(y, p), "brier": float(np.mean((p - y) ** 2)), "mean_p": float(p.mean()),
            "within_category": within_category_auroc(rows, y, s, min_each),
            "aurc": float(risk.mean()),
            "effective_reliability_at_0.5": float((y[answered] * 2 - 1).sum() / len(y))}


# ---- running the methods -----------------------------------------------------------------------------------
def sidecar_hyperparams(shipped: Sidecar | None, fast: bool) -> dict:
    """What every sidecar this evaluation trains is built with: the shipped checkpoint's reads (the Qwen one reads
    `hidden + layers`, not the default `hidden`), so the held-out columns describe what ships; `fast` for smoke
    tests."""
    return ({"reads": tuple(shipped.hp["reads"])} if shipped else {}) | ({"seeds": 1, "epochs": 5} if fast else {})


def methods(signature: dict, hp: dict) -> list[Method]:
    return [SidecarMethod(signature=signature, **hp), *(cls() for cls in BASELINES)]


def run_split(data: Part, idx: dict[str, np.ndarray], signature: dict, hp: dict,
              shipped: Sidecar | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Fit every method on the train part, calibrate on val; (score, proba) on test, per method."""
    train, val, test = (data.take(idx[k]) for k in ("train", "val", "test"))
    out = {}
    for m in methods(signature, hp):
        if shipped is not None and m.name == "sidecar":
            m = SidecarMethod(sidecar=shipped)  # evaluate exactly what ships
        else:
            m.fit(train, val)
        m.calibrate(val)
        out[m.name] = (m.score(test), m.proba(test))
    return out


def cross_validate(data: Part, folds: int, signature: dict, hp: dict, seed: int = 0):
    """Out-of-fold scores for every example (each fold's model saw 85% of the rest for training, 15% for val).
    Folds and validation parts are drawn from the rows' ids, so adding or reordering rows does not redraw them."""
    n = len(data.y)
    scores: dict[str, np.ndarray] = {}
    probas: dict[str, np.ndarray] = {}
    per_fold: dict[str, list[float]] = {}
    strata, ids = strata_of(data.rows, data.y, min_count=folds), [r["id"] for r in data.rows]
    fold = folds_by_id(strata, ids, folds, seed)
    for f in range(folds):
        rest, te = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        tr, va = by_id(rest, strata, ids, 0.15, seed + f)
        for name, (s, p) in run_split(data, {"train": tr, "val": va, "test": te}, signature, hp).items():
            scores.setdefault(name, np.zeros(n))[te] = s
            probas.setdefault(name, np.zeros(n))[te] = p
            per_fold.setdefault(name, []).append(auroc(data.y[te], s))
    return scores, probas, per_fold


def leave_one_source_out(data: Part, signature: dict, hp: dict, boot: int, min_each: int,
                         min_positives: int = 5, draws: int = 3, seed: int = 0) -> dict:
    """Every method trained without a whole knowledge source (its conversational variants included) and tested on
    it: how P(knows) behaves on questions unlike anything in training. Each held-out source is scored `draws`
    times, each fit with another inner validation part (drawn from the rows' ids): one draw's AUROC moves by a few
    hundredths with that part alone, so the table reports the mean over draws and their spread."""
    sources = np.array([r["source"] for r in data.rows])
    strata, ids = strata_of(data.rows, data.y), [r["id"] for r in data.rows]
    out = {}
    for src in sorted(set(sources)):
        test, rest = np.flatnonzero(sources == src), np.flatnonzero(sources != src)
        if data.y[test].sum() < min_positives or len(set(sources[rest])) < 1:
            continue
        part, runs = data.take(test), []
        for d in range(draws):
            tr, va = by_id(rest, strata, ids, 0.15, seed + d)
            res = run_split(data, {"train": tr, "val": va, "test": test}, signature, hp)
            runs.append({m: block(part.rows, part.y, s, p, boot, min_each) for m, (s, p) in res.items()})
        out[src] = {m: _over_draws([r[m] for r in runs]) for m in runs[0]}
        print(f"held out {src}: " + "  ".join(f"{m} {v['auroc']:.3f}±{v['auroc_sd']:.3f}" for m, v in out[src].items()))
    return out


def _over_draws(blocks: list[dict]) -> dict:
    """One method's blocks from several draws, averaged (the 95% interval as the mean of the draws' bootstrap
    bounds), with AUROC's and ECE's spread."""
    return mean_over(blocks) | {"auroc_sd": float(np.std([b["auroc"] for b in blocks])),
                                "ece_sd": float(np.std([b["ece"] for b in blocks])), "draws": len(blocks)}


def loso_table(loso: dict) -> str:
    """Per held-out source: AUROC ± sd over draws [95% CI] · AUPRC · ECE of every method (AUPRC next to the
    source's base rate)."""
    names = list(next(iter(loso.values())))
    head = "| held-out source (n, known) | " + " | ".join(names) + " |\n|---|" + "---|" * len(names) + "\n"
    lines = []
    for src, res in loso.items():
        first = res[names[0]]
        cells = [f"{res[n]['auroc']:.3f} ± {res[n]['auroc_sd']:.3f} [{res[n]['auroc_ci95'][0]:.2f}, "
                 f"{res[n]['auroc_ci95'][1]:.2f}] · "
                 f"AUPRC {res[n]['auprc']:.3f} · ECE {res[n]['ece']:.3f}" for n in names]
        lines.append(f"| {src} ({first['n']}, {first['positives']}) | " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def recommend_bands(y: np.ndarray, p: np.ndarray, target_high: float = 0.7, max_low: float = 0.05,
                    min_count: int = 10) -> dict:
    """Bands from validation data: `high` = lowest threshold whose answered set is right ≥ 70% of the time
    (the default's meaning); `low` = highest threshold below which the model is right ≤ 5% of the time.
    Where the data cannot support a choice, the default stays."""
    cand = np.unique(np.round(p, 3))
    high = next((float(t) for t in cand if (p >= t).sum() >= min_count and y[p >= t].mean() >= target_high), None)
    lows = [float(t) for t in cand if (p < t).sum() >= min_count and y[p < t].mean() <= max_low]
    low = max(lows) if lows else None
    if high is not None and low is not None and low > high:
        low = high
    return {"low": low if low is not None else DEFAULT_BANDS[0], "high": high if high is not None else DEFAULT_BANDS[1],
            "low_from_data": low is not None, "high_from_data": high is not None,
            "rule": f"high: lowest p whose answered set is right >= {target_high:.0%} (>= {min_count} answered); "
                    f"low: highest p below which <= {max_low:.0%} are right; chosen on the validation part"}


def band_shares(y: np.ndarray, p: np.ndarray, low: float, high: float) -> dict:
    """Share and accuracy of abstain / hedge / answer under the given bands."""
    out = {}
    for name, m in (("abstain", p < low), ("hedge", (p >= low) & (p < high)), ("answer", p >= high)):
        out[name] = {"share": float(m.mean()), "accuracy": float(y[m].mean()) if m.any() else None}
    return out


# ---- figures ----------------------------------------------------------------------------------------------
def _save(fig, path: Path) -> str:
    """Write a figure as PNG and free it; returns the path."""
    import matplotlib.pyplot as plt
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def figures(out: Path, evals: dict[str, dict[str, tuple]], y_by_split: dict[str, np.ndarray]) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(evals), figsize=(5.5 * len(evals), 4.5), squeeze=False)
    for ax, (split, res) in zip(axes[0], evals.items()):
        for name, (_, p) in res.items():
            cov, risk = risk_coverage(y_by_split[split], p)
            ax.plot(cov, risk, label=f"{name} (AURC {risk.mean():.3f})", lw=2.5 if name == "sidecar" else 1.2)
        ax.set(title=f"risk-coverage, {split} test", xlabel="coverage (share answered)", ylabel="error among answered")
        ax.legend(fontsize=7)
    paths = [_save(fig, out / "risk_coverage.png")]

    fig, axes = plt.subplots(1, len(evals), figsize=(5 * len(evals), 4.5), squeeze=False)
    edges = np.linspace(0, 1, 11)
    for ax, (split, res) in zip(axes[0], evals.items()):
        y = y_by_split[split]
        for name in ("sidecar", "hidden_lr"):
            p = res[name][1]
            which = np.minimum((p * 10).astype(int), 9)
            pts = [(p[which == b].mean(), y[which == b].mean()) for b in range(10) if (which == b).sum() >= 5]
            ax.plot(*zip(*pts), "o-", label=f"{name} (ECE {ece(y, p):.3f})")
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.hist(res["sidecar"][1], bins=edges, weights=np.full(len(y), 1 / len(y)), alpha=0.2, label="sidecar p share")
        ax.set(title=f"reliability, {split} test", xlabel="predicted P(knows)", ylabel="observed accuracy")
        ax.legend(fontsize=7)
    return [*paths, _save(fig, out / "reliability.png")]


def table(metrics: dict) -> str:
    """The markdown table for the README."""
    names = list(metrics["splits"]["random"]["methods"])
    head = ("| method | test AUROC [95% CI] | cross-domain AUROC [95% CI] | within-category AUROC (CV) | "
            "CV AUROC mean ± sd | test ECE | test Brier | test AURC |\n|---|---|---|---|---|---|---|---|\n")
    lines = []
    for n in names:
        r, c = metrics["splits"]["random"]["methods"][n], metrics["splits"]["cross_domain"]["methods"][n]
        cv = metrics["splits"].get("cv", {}).get("methods", {}).get(n)
        wc = f"{cv['within_category']['auroc']:.3f}" if cv else "–"
        spread = f"{cv['fold_auroc_mean']:.3f} ± {cv['fold_auroc_sd']:.3f}" if cv else "–"
        lines.append(f"| {n} | {r['auroc']:.3f} [{r['auroc_ci95'][0]:.2f}, {r['auroc_ci95'][1]:.2f}] | "
                     f"{c['auroc']:.3f} [{c['auroc_ci95'][0]:.2f}, {c['auroc_ci95'][1]:.2f}] | {wc} | {spread} | "
                     f"{r['ece']:.3f} | {r['brier']:.3f} | {r['aurc']:.3f} |")
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    ap = dataset_parser("python -m training.evaluate", __doc__)
    ap.add_argument("--out", type=Path, help="where metrics and figures go (default: the dataset folder)")
    ap.add_argument("--checkpoint", type=Path, help="sidecar evaluated on the random split (default: the shipped "
                                                    "one; it must have been trained on that split's train part)")
    ap.add_argument("--cv-folds", type=int, default=5, help="cross-validation folds, 0 to skip (default: %(default)s)")
    ap.add_argument("--bootstrap", type=int, default=300, help="bootstrap resamples (default: %(default)s)")
    ap.add_argument("--min-each", type=int, default=15,
                    help="within-category AUROC uses categories with at least this many of each label")
    ap.add_argument("--no-applicability", dest="applicability", action="store_false",
                    help="skip the applicability evaluation (training/evaluate_applicability.py)")
    ap.add_argument("--no-loso", dest="loso", action="store_false",
                    help="skip the leave-one-source-out evaluation (one training run per knowledge source)")
    ap.add_argument("--loso-draws", type=int, default=3,
                    help="fits per held-out source, each with another inner validation part (default: %(default)s)")
    ap.add_argument("--fast", action="store_true", help="tiny sidecar training (smoke tests only)")
    ap.add_argument("--limit", type=int, help="use only the first N examples (smoke tests only)")
    args = ap.parse_args(argv)
    with threadpool_limits(1):  # many small BLAS fits: spinning threads on a busy CPU cost far more than they give
        return evaluate(args)


def evaluate(args: argparse.Namespace) -> dict:
    """Everything `main` describes, for parsed arguments."""

    settings = step_settings(args)
    directory = dataset_folder(args)
    out = args.out or directory
    rows, feats, meta = load_dataset(directory)
    ensure_splits(directory, rows, seed=0)
    knowledge = np.array([teaches_knows(r) for r in rows])   # P(knows) is about knowledge questions only
    rows, feats = [r for r, k in zip(rows, knowledge) if k], feats[knowledge]
    splits = load_splits(directory / "splits.json", rows)
    if args.limit:
        rows, feats = rows[:args.limit], feats[:args.limit]
        splits = {k: {p: v[v < args.limit] for p, v in s.items()} for k, s in splits.items()}
    y = np.array([r["label"] for r in rows])
    data = Part(rows, feats, y)
    signature = meta["signature"]
    try:
        shipped = Sidecar.load(args.checkpoint or sidecar_dir(settings, signature["model_id"]), signature)
    except FileNotFoundError:
        shipped = None
    except SidecarMismatch as exc:
        print(f"not using the shipped checkpoint: {exc}")
        shipped = None

    metrics: dict = {"dataset": {"n": len(rows), "positives": int(y.sum()), "label_rate": float(y.mean()),
                                 "by_source": {s: {"n": int(sum(r["source"] == s for r in rows)),
                                                   "label_rate": float(np.mean([r["label"] for r in rows if r["source"] == s]))}
                                               for s in sorted({r["source"] for r in rows})},
                                 "max_new_tokens": meta.get("max_new_tokens"), "model": signature["model_id"]},
                     "splits": {}}
    evals, y_by_split, hp = {}, {}, sidecar_hyperparams(shipped, args.fast)
    for name in ("random", "cross_domain"):
        idx = splits[name]
        res = run_split(data, idx, signature, hp, shipped if name == "random" else None)
        test = data.take(idx["test"])
        evals[name], y_by_split[name] = res, test.y
        entry = {"n_train": len(idx["train"]), "n_val": len(idx["val"]), "methods": {}, "by_source": {}}
        for m, (s, p) in res.items():
            entry["methods"][m] = block(test.rows, test.y, s, p, args.bootstrap, args.min_each)
        for src in sorted({r["source"] for r in test.rows}):
            sel = np.array([r["source"] == src for r in test.rows])
            entry["by_source"][src] = {m: block([r for r, k in zip(test.rows, sel) if k], test.y[sel], s[sel], p[sel],
                                                args.bootstrap, args.min_each) for m, (s, p) in res.items()}
        metrics["splits"][name] = entry
        print(f"{name}: " + "  ".join(f"{m} {entry['methods'][m]['auroc']:.3f}" for m in res))

    if args.loso:
        metrics["splits"]["loso"] = leave_one_source_out(data, signature, hp, args.bootstrap, args.min_each,
                                                           draws=args.loso_draws)
    if args.cv_folds:
        scores, probas, per_fold = cross_validate(data, args.cv_folds, signature, hp)
        metrics["splits"]["cv"] = {"folds": args.cv_folds, "methods": {
            m: {**block(rows, y, scores[m], probas[m], args.bootstrap, args.min_each),
                "fold_auroc_mean": float(np.mean(per_fold[m])), "fold_auroc_sd": float(np.std(per_fold[m]))}
            for m in scores}}
        print("cv within-category: " + "  ".join(
            f"{m} {v['within_category']['auroc']:.3f}" for m, v in metrics["splits"]["cv"]["methods"].items()))

    # Bands from the validation part of the random split, with the evaluated sidecar.
    val = data.take(splits["random"]["val"])
    side = SidecarMethod(sidecar=shipped) if shipped else SidecarMethod(signature=signature, **hp).fit(
        data.take(splits["random"]["train"]), val)
    bands = recommend_bands(val.y, side.proba(val))
    p_test = evals["random"]["sidecar"][1]
    metrics["bands"] = {**bands, "defaults": {"low": DEFAULT_BANDS[0], "high": DEFAULT_BANDS[1]},
                        "test_shares_recommended": band_shares(y_by_split["random"], p_test, bands["low"], bands["high"]),
                        "test_shares_defaults": band_shares(y_by_split["random"], p_test, *DEFAULT_BANDS)}
    band_sweep.save(out, y_by_split["random"], p_test, settings.policy.bands, bands)  # bands.json + figures/bands.png
    metrics["figures"] = figures(out / "figures", evals, y_by_split)
    metrics["figures"] = [str(Path(f).relative_to(out)) for f in metrics["figures"]]
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    md = table(metrics) + (f"\nLeave-one-source-out, mean over {args.loso_draws} inner validation draws (AUROC ± sd [95% CI] · "
                           f"AUPRC · ECE):\n\n{loso_table(metrics['splits']['loso'])}"
                           if metrics["splits"].get("loso") else "")
    (out / "metrics.md").write_text(md)
    print(md)
    print(f"recommended bands: low={bands['low']:.3f} high={bands['high']:.3f} ({bands['rule']})")
    if args.applicability:
        print(evaluate_applicability.table(evaluate_applicability.evaluate(directory, out, args.limit)))
    return metrics


if __name__ == "__main__":
    main()

"""Choose the sidecar's reads by OUT-OF-DISTRIBUTION results: leave-one-source-out AUROC / ECE for each candidate
set of reads (linear read of the residual stream, linear read of the lens / MLP-write trajectory, GRU over it),
never the random test split; the two residual candidates also without the message read (the residual averaged
over the latest user message, a per-model choice: gate/models.py). Writes selection.json / selection.md next to the dataset; the chosen reads go into
`Sidecar.defaults["reads"]`.

    python -m training.select_reads                      # every candidate, every held-out source
    python -m training.select_reads --jobs 2             # two candidates at a time (one core each)
"""
from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from multiprocessing import get_context

import numpy as np
from threadpoolctl import threadpool_limits


from training.baselines import Part, SidecarMethod, without_message
from training.metrics import auroc, ece
from training.splits import by_id, strata_of
from training.store import dataset_folder, dataset_parser, load_dataset, teaches_knows

CANDIDATES = (("hidden", "gru"), ("hidden", "layers"), ("hidden",), ("hidden", "layers", "gru"), ("layers",),
              ("gru",), ("layers", "gru"))  # the likeliest first: with --jobs their rows come in first
WITHOUT_MESSAGE = (("hidden",), ("hidden", "layers"))  # also scored with the message read left out
NO_MESSAGE = " (no message read)"


def loso_scores(data: Part, reads: tuple[str, ...], signature: dict, min_positives: int, draws: int = 3,
                seed: int = 0) -> dict:
    """AUROC and ECE on each held-out knowledge source of a sidecar with these reads, trained on the others;
    the mean over `draws` fits, each with another inner validation part (as training.evaluate does)."""
    sources = np.array([r["source"] for r in data.rows])
    strata, ids = strata_of(data.rows, data.y), [r["id"] for r in data.rows]
    out = {}
    for src in sorted(set(sources)):
        test, rest = np.flatnonzero(sources == src), np.flatnonzero(sources != src)
        if data.y[test].sum() < min_positives:
            continue
        y, scores = data.y[test], []
        for d in range(draws):
            tr, va = by_id(rest, strata, ids, 0.15, seed + d)
            p = SidecarMethod(signature=signature, reads=reads).fit(data.take(tr), data.take(va)).proba(data.take(test))
            scores.append((auroc(y, p), ece(y, p)))
        a, e = np.array(scores).T
        out[src] = {"n": int(len(test)), "positives": int(y.sum()), "auroc": float(a.mean()),
                    "auroc_sd": float(a.std()), "ece": float(e.mean())}
    return out


def _scored(data: Part, reads: tuple[str, ...], signature: dict, min_positives: int, draws: int) -> dict:
    """One candidate's loso_scores on one BLAS thread: many small fits, where spinning threads cost more than
    they give; parallelism comes from scoring candidates side by side (--jobs)."""
    with threadpool_limits(1):
        return loso_scores(data, reads, signature, min_positives, draws)


def main(argv: list[str] | None = None) -> dict:
    ap = dataset_parser("python -m training.select_reads", __doc__)
    ap.add_argument("--min-positives", type=int, default=10, help="held-out sources need this many known answers")
    ap.add_argument("--draws", type=int, default=3, help="fits per held-out source (default: %(default)s)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="candidates scored at once, each in its own process on one thread (default: %(default)s)")
    args = ap.parse_args(argv)
    directory = dataset_folder(args)
    rows, feats, meta = load_dataset(directory)
    keep = np.array([teaches_knows(r) for r in rows])
    data = Part([r for r, k in zip(rows, keep) if k], feats[keep], np.array([r["label"] for r, k in zip(rows, keep) if k]))
    result = {}
    runs = [("+".join(r), r, data, meta["signature"]) for r in CANDIDATES]
    if data.feats.message.shape[1]:
        feats, signature = without_message(data.feats, meta["signature"])
        runs += [("+".join(r) + NO_MESSAGE, r, Part(data.rows, feats, data.y), signature) for r in WITHOUT_MESSAGE]
    pool = (ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) if args.jobs > 1
            else ThreadPoolExecutor(1))  # one job: in this process, no start-up or copy of the data
    with pool:
        futures = {pool.submit(_scored, part, reads, signature, args.min_positives, args.draws): name
                   for name, reads, part, signature in runs}
        for future in as_completed(futures):
            name, res = futures[future], future.result()
            result[name] = {"by_source": res, "mean_auroc": float(np.mean([v["auroc"] for v in res.values()])),
                            "mean_ece": float(np.mean([v["ece"] for v in res.values()]))}
            print(f"{name:38s} mean AUROC {result[name]['mean_auroc']:.3f}  " +
                  "  ".join(f"{s} {v['auroc']:.3f}/{v['ece']:.3f}" for s, v in res.items()), flush=True)
    sources = list(next(iter(result.values()))["by_source"])
    lines = ["| reads | mean held-out AUROC | mean ECE | " + " | ".join(f"{s} AUROC / ECE" for s in sources) + " |",
             "|---|---|---|" + "---|" * len(sources)]
    for name, r in sorted(result.items(), key=lambda kv: -kv[1]["mean_auroc"]):
        lines.append(f"| {name} | {r['mean_auroc']:.3f} | {r['mean_ece']:.3f} | " + " | ".join(
            f"{r['by_source'][s]['auroc']:.3f} / {r['by_source'][s]['ece']:.3f}" for s in sources) + " |")
    (directory / "selection.json").write_text(json.dumps(result, indent=1))
    (directory / "selection.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()

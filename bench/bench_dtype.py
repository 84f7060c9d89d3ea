"""Does a sidecar trained on features of one dtype hold on features computed in another?

    .venv/bin/python bench/bench_dtype.py [--rows test|all] [--threads 1]

Recomputes the shipped dataset's features (probe only, no generation; batched, left padding, prompts
rendered exactly as the build rendered them) in float32 and in bfloat16, then prints:
1. the shipped sidecar (trained on the build's float32 features) scored on the random split's test part with
   the shipped, the recomputed float32 and the bfloat16 features: AUROC, ECE, Brier, how far P(knows) moves
   and how many band decisions change;
2. per-feature agreement of both recomputations with the shipped features (float32's is the noise floor:
   other batching, float16 storage);
3. with `--rows all`, the reverse: a sidecar trained on bfloat16 features, scored on float32 and bfloat16 test
   features (what a CPU without native bf16 does with a bf16-trained sidecar), next to one trained the same way
   on the shipped float32 features. Only the labelled knowledge questions are recomputed: chat turns teach no
   sidecar.
Recomputed features are cached (resumable) under --cache, so a rerun only prints.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gate.config import load_settings
from gate.engine.features import GLOBAL_FEATURES, LAYER_FEATURES, Features
from gate.engine.loading import model_slug
from gate.sidecar import Sidecar, sidecar_dir
from training.build_dataset import messages_of
from training.evaluate import auroc, ece
from training.sources import Example
from training.store import concat, data_dir, load_dataset, load_features, save_features, teaches_knows
from training.train import ensure_splits

DTYPES = ("float32", "bfloat16")
BANDS = ((0.4, 0.7), (0.19, 0.7))


def recompute(settings, rows: list[dict], dtype: str, cache: Path, batch_size: int) -> Features:
    """Features of `rows` in `dtype`, reusing (and extending) the cache file."""
    done: dict[str, Features] = {}
    if cache.exists():
        feats, ids, _ = load_features(cache)
        done = {i: feats[k:k + 1] for k, i in enumerate(ids)}
    todo = [r for r in rows if r["id"] not in done]
    if todo:
        from gate.engine.runtime import Engine
        engine = Engine(settings.model_copy(update={"model": settings.model.model_copy(update={"dtype": dtype})}))
        chats = {r["id"]: messages_of(Example.of(r)) for r in todo}  # the conversation as the build asked it
        order = sorted(todo, key=lambda r: sum(len(m["content"]) for m in chats[r["id"]]))  # little padding
        with tqdm(total=len(order), desc=f"features {dtype}", unit="q") as bar:
            for b in range(0, len(order), batch_size):
                batch = order[b:b + batch_size]
                feats = engine.probe_chats([chats[r["id"]] for r in batch]).features
                done.update({r["id"]: feats[k:k + 1] for k, r in enumerate(batch)})
                ids = list(done)  # saved after every batch: on a slow CPU a run may be stopped at any time
                save_features(cache, concat([done[i] for i in ids]), ids, {"dtype": dtype})
                bar.update(len(batch))
        del engine
    return concat([done[r["id"]] for r in rows])


def scores(sc: Sidecar, y: np.ndarray, feats: Features, ref: np.ndarray | None) -> list[str]:
    p = sc.predict_proba(feats)
    cells = [f"{auroc(y, p):.3f}", f"{ece(y, p):.3f}", f"{np.mean((p - y) ** 2):.4f}", f"{p.mean():.3f}"]
    if ref is None:
        return cells + ["–"] * 3
    d = np.abs(p - ref)
    flips = [int((np.digitize(p, b) != np.digitize(ref, b)).sum()) for b in BANDS]
    return cells + [f"{d.mean():.4f}", f"{d.max():.4f}", " / ".join(map(str, flips))]


def agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Pearson r across prompts and median |a-b| in units of a's spread."""
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    r = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
    return r, float(np.median(np.abs(a - b)) / (a.std() + 1e-12))


def print_table(head: list[str], lines: list[list[str]]) -> None:
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for line in lines:
        print("| " + " | ".join(line) + " |")
    print()


def feature_agreement(a: Features, b: Features) -> list[list[str]]:
    """Table rows: per-feature agreement of two feature sets of the same prompts."""
    lines = [[f"layer {n}", *(f"{v:.4f}" for v in agreement(a.layer[:, :, i], b.layer[:, :, i]))]
             for i, n in enumerate(LAYER_FEATURES)]
    lines += [[f"global {n}", *(f"{v:.4f}" for v in agreement(a.globals[:, i], b.globals[:, i]))]
              for i, n in enumerate(GLOBAL_FEATURES)]
    ha, hb = a.hidden.astype(np.float32), b.hidden.astype(np.float32)
    cos = (ha * hb).sum(-1) / (np.linalg.norm(ha, axis=-1) * np.linalg.norm(hb, axis=-1) + 1e-12)
    lines.append(["hidden state: cosine mean / min", f"{cos.mean():.5f}", f"{cos.min():.5f}"])
    top = (a.top_tokens == b.top_tokens).mean(0)
    lines.append(["lens top-1 token equal: final layer / all layers", f"{top[-1]:.4f}", f"{top.mean():.4f}"])
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="gate.yaml (model.id picks the dataset and the shipped sidecar)")
    ap.add_argument("--rows", choices=("test", "all"), default="test",
                    help="bfloat16 features of the random split's test part, or of every labelled knowledge "
                         "question (needed for the reverse direction); float32 is recomputed for the test part only")
    ap.add_argument("--sample", type=int, help="only this many test questions, drawn at random (seed 0): bfloat16 "
                    "on a CPU without native support is slow")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, help="torch CPU threads")
    ap.add_argument("--cache", type=Path, default=Path("~/.cache/knowledge-gate/bench_dtype").expanduser())
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = load_settings(args.config)
    slug = model_slug(settings.model.id)
    directory = data_dir(slug)
    rows, shipped, _ = load_dataset(directory)
    split = ensure_splits(directory, rows, seed=0)["random"]
    y = np.array([r["label"] for r in rows], dtype=np.float64)
    part = {k: np.asarray([i for i in split[k] if teaches_knows(rows[i])]) for k in ("train", "val", "test")}
    test = part["test"]  # the labelled knowledge questions only: chat turns have no label
    if args.sample:
        test = np.sort(np.random.default_rng(0).choice(test, args.sample, replace=False))
    labelled = np.sort(np.concatenate(list(part.values())))
    wanted = test if args.rows == "test" else labelled
    args.cache.mkdir(parents=True, exist_ok=True)

    def features(dtype: str, idx: np.ndarray) -> Features:
        return recompute(settings, [rows[i] for i in idx], dtype, args.cache / f"{slug}-{dtype}.npz", args.batch_size)

    f32, bf16 = features("float32", test), features("bfloat16", wanted)
    at = {row: k for k, row in enumerate(wanted)}  # row number -> position in bf16
    tpos = np.array([at[i] for i in test])
    bf16_test = bf16[tpos]
    yt = y[test]

    sc = Sidecar.load(sidecar_dir(settings, slug))
    ref = sc.predict_proba(shipped[test])
    print(f"model {settings.model.id}; {len(test)} test questions ({int(yt.sum())} known); "
          f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}\n")
    print("Shipped sidecar (trained on the build's float32 features), random split's test part:")
    head = ["features", "AUROC", "ECE", "Brier", "mean p", "mean |Δp|", "max |Δp|",
            "decisions changed at " + " / ".join(f"{lo}–{hi}" for lo, hi in BANDS)]
    print_table(head, [["shipped (build, float32)", *scores(sc, yt, shipped[test], None)],
                       ["recomputed float32", *scores(sc, yt, f32, ref)],
                       ["recomputed bfloat16", *scores(sc, yt, bf16_test, ref)]])

    print(f"Feature agreement with the shipped float32 features ({len(test)} test prompts): Pearson r, "
          f"median |Δ| / sd(shipped)")
    base = shipped[test]
    rows_a, rows_b = feature_agreement(base, f32), feature_agreement(base, bf16_test)
    print_table(["feature", "float32 r", "float32 median |Δ|/sd", "bfloat16 r", "bfloat16 median |Δ|/sd"],
                [[a[0], a[1], a[2], b[1], b[2]] for a, b in zip(rows_a, rows_b)])

    if args.rows == "all":
        print("Reverse direction: sidecars trained on one dtype's features (same splits and seeds), scored on both:")
        pos = {k: np.array([at[i] for i in part[k]]) for k in ("train", "val")}  # their positions in `wanted`
        sets = (("float32 (shipped)", shipped[wanted]), ("bfloat16", bf16))
        lines = []
        for name, f in sets:
            trained = Sidecar(signature=sc.signature).fit(f[pos["train"]], y[part["train"]],
                                                          f[pos["val"]], y[part["val"]])
            own = trained.predict_proba(f[tpos])
            for other, g in sets:
                lines.append([f"trained on {name}", f"scored on {other}",
                              *scores(trained, yt, g[tpos], None if other == name else own)])
        print_table(["sidecar", "features", *head[1:]], lines)


if __name__ == "__main__":
    main()

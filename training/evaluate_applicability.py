"""Does the gate pass turns that are not knowledge questions, and gate the ones that are, on KINDS OF TURNS IT
NEVER SAW? Leave-one-source-out from saved features alone (no model is loaded): for every source (a chat corpus
such as PersistBench or HumanEval, or a QA source such as FanOutQA, with its conversational variants), the
applicability head is trained on all other sources and applied to the held-out one (sources cut from one corpus,
like SQuAD's four, are held out together: training.chat_sources.CORPUS).

Reported per held-out source and pooled: the share of non-knowledge turns that get `pass` and of knowledge
questions that are gated (P(factual) >= threshold), AUROC and ECE of the pooled out-of-source P(factual), next to
a baseline that reads no internals (TF-IDF of the latest user message). P(factual) is calibrated for an even prior,
so its ECE weighs both kinds of turn equally. Writes applicability.json / .md.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from gate.applicability import Applicability, decided_early
from gate.config import FACTUAL_THRESHOLD
from gate.engine.features import Features
from training.baselines import without_message
from training.build_dataset import SHORT_INSTRUCTION
from training.chat_sources import CORPUS
from training.metrics import auroc, balanced_weights, ece, mean_over
from training.splits import by_id, strata_of
from training.store import dataset_folder, dataset_parser, is_factual, load_dataset, variant_of

NO_MESSAGE = "without_message_read"
FULL_READ, EARLY_READ = "full_read_only", "early_read_only"  # the cascade's two reads, each alone
# Turns that state something, then ask: chat when the statement answers the question (the turn holds its answer),
# a knowledge question when it does not (a lead: SQuAD's, and SciQ's `lead` variant). Held out, these few turns hold
# an outsized share of the head's mistakes (data/<model>/README.md), so the summary also gives the shares without them.
STATEMENT_SOURCES = frozenset({"stated", "squadfact", "sciq", "coqafact", "squadlead"})
# Sources whose text may be quoted in shipped files (BSD / MIT / Apache-2.0 or written here); others by id only.
QUOTABLE = {"chatterbot", "cbtrivia", "humaneval", "codeio", "gsm", "arithmetic", "transform", "reading", "context",
            "instructions", "followup", "simpleqa", "tau2", "stated"}


class TextBaseline:
    """TF-IDF of the latest user message, logistic, Platt on val: what the words alone say about the kind."""

    def fit(self, rows: list[dict], y: np.ndarray, val_rows: list[dict], y_val: np.ndarray) -> "TextBaseline":
        self.vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit([r["question"] for r in rows])
        self.lr = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000).fit(self._x(rows), y)
        self.platt = LogisticRegression(C=1e4, class_weight="balanced").fit(
            self.lr.decision_function(self._x(val_rows))[:, None], y_val)
        return self

    def _x(self, rows: list[dict]):
        return self.vec.transform([r["question"] for r in rows])

    def predict_proba(self, rows: list[dict]) -> np.ndarray:
        return self.platt.predict_proba(self.lr.decision_function(self._x(rows))[:, None])[:, 1]


def held_out_predictions(rows: list[dict], feats: Features, y: np.ndarray, signature: dict, seed: int = 0,
                         C: tuple[float, ...] | None = None, ablate: bool = True) -> dict[str, np.ndarray]:
    """Out-of-source P(factual) for every row, for the gate's head, the text baseline and (with `ablate`, where
    the features have a message read: what that read adds) the same head without the message read."""
    sources, ids = np.array([r["source"] for r in rows]), [r["id"] for r in rows]
    corpora = np.array([CORPUS.get(s, s) for s in sources])
    strata = strata_of(rows, y)
    heads = {"applicability": (feats, signature)}
    if ablate and feats.message.shape[1]:
        heads[NO_MESSAGE] = without_message(feats, signature)
    out = {name: np.zeros(len(rows)) for name in [*heads, "text_tfidf"]}
    for corpus in sorted(set(corpora)):
        test, rest = np.flatnonzero(corpora == corpus), np.flatnonzero(corpora != corpus)
        if len(set(y[rest])) < 2:
            continue
        tr, va = by_id(rest, strata, ids, 0.15, seed)  # from the ids: the rows' order changes nothing
        for name, (f, sig) in heads.items():
            head = Applicability(sig, **({"C": C} if C else {})).fit(f[tr], y[tr], f[va], y[va], groups=sources[tr])
            out[name][test] = head.predict_proba(f[test])
            if name == "applicability" and ablate and head.cascades:
                for read, key in (("", FULL_READ), ("early_", EARLY_READ)):
                    out.setdefault(key, np.zeros(len(rows)))[test] = head.read_proba(f[test], read)
        text = TextBaseline().fit([rows[i] for i in tr], y[tr], [rows[i] for i in va], y[va])
        out["text_tfidf"][test] = text.predict_proba([rows[i] for i in test])
    return out


def _share(hits: np.ndarray) -> float | None:
    """The share of True in `hits`; None when there are none to count."""
    return float(hits.mean()) if hits.size else None


def _parts(chat: np.ndarray, p: np.ndarray, threshold: float, **parts: np.ndarray) -> dict:
    """Pass and gated shares within each named part of the turns (a split of the whole)."""
    return {name: {"passed": _share(p[chat & sel] < threshold), "n_chat": int((chat & sel).sum()),
                   "gated": _share(p[~chat & sel] >= threshold), "n_factual": int((~chat & sel).sum())}
            for name, sel in parts.items()}


def summarise(rows: list[dict], y: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    """Pass / gated shares per held-out source and kind, and pooled."""
    per_source = {}
    for src in sorted({r["source"] for r in rows}):
        sel = np.array([r["source"] == src for r in rows])
        factual = bool(y[sel].mean() > 0.5)
        share = float((p[sel] >= threshold).mean() if factual else (p[sel] < threshold).mean())
        kinds = sorted({r["category"] for r, s in zip(rows, sel) if s}) if not factual else []
        per_source[src] = {"n": int(sel.sum()), "factual": factual, "kinds": kinds,
                           ("gated" if factual else "passed"): share, "mean_p": float(p[sel].mean())}
    chat = y == 0
    kinds = {}
    for k in sorted({r["category"] for r, c in zip(rows, chat) if c}):
        sel = chat & np.array([r["category"] == k for r in rows])
        kinds[k] = {"n": int(sel.sum()), "passed": float((p[sel] < threshold).mean())}
    asked = np.array([variant_of(r["id"]) for r in rows])
    stating = np.array([r["source"] in STATEMENT_SOURCES for r in rows]) | (asked == "lead")
    short = np.array([bool(r.get("short")) for r in rows])  # the short-answer instruction appended
    variants = {v: {"n": int(sel.sum()), "gated": float((p[sel] >= threshold).mean()),
                    "sources": sorted({r["source"] for r, s in zip(rows, sel) if s})}
                for v in sorted(set(asked[~chat])) for sel in [~chat & (asked == v)]}
    return {"threshold": threshold, "by_source": per_source, "by_kind": kinds, "by_variant": variants,
            "split": _parts(chat, p, threshold, statement_then_question=stating, other_turns=~stating),
            "instruction": _parts(chat, p, threshold, with_instruction=short, bare=~short),
            "passed": float((p[chat] < threshold).mean()), "n_chat": int(chat.sum()), "kinds": len(kinds),
            "gated": float((p[~chat] >= threshold).mean()), "n_factual": int((~chat).sum()),
            "auroc": auroc(y, p), "ece": ece(y, p, weights=balanced_weights(y))}


def failures(rows: list[dict], y: np.ndarray, p: np.ndarray, threshold: float, n: int = 8) -> dict:
    """The held-out turns the head misjudged most confidently: non-knowledge turns it gated, questions it passed."""
    def show(i: int) -> dict:
        r = rows[i]
        text = r["question"] if r["source"] in QUOTABLE else f"(text not quoted: {r['source']} licence)"
        return {"id": r["id"], "source": r["source"], "kind": r["category"], "p_factual": round(float(p[i]), 3),
                "turns": len(r.get("history") or []) // 2 + 1, "text": text[:160]}
    gated = [i for i in np.argsort(-p) if y[i] == 0 and p[i] >= threshold][:n]
    passed = [i for i in np.argsort(p) if y[i] == 1 and p[i] < threshold][:n]
    return {"gated_but_not_knowledge": [show(i) for i in gated], "passed_but_knowledge": [show(i) for i in passed]}


def table(result: dict) -> str:
    methods = result["methods"]
    others = [m for m in (FULL_READ, EARLY_READ, NO_MESSAGE, "text_tfidf") if m in methods]
    titles = {FULL_READ: "full read alone (no early exit)", EARLY_READ: "residual read alone",
              NO_MESSAGE: "without the message read", "text_tfidf": "text TF-IDF (no internals)"}
    lines = ["| held-out source | kind(s) | n | applicability | " + " | ".join(titles[m] for m in others) + " |",
             "|---|---|---|---|" + "---|" * len(others)]
    gate = methods["applicability"]
    for src, g in gate["by_source"].items():
        what = "gated" if g["factual"] else "passed"
        kinds = ", ".join(g["kinds"]) or "knowledge questions"
        lines.append(f"| {src} | {kinds} | {g['n']} | {what} {g[what]:.1%} | " +
                     " | ".join(f"{what} {methods[m]['by_source'][src][what]:.1%}" for m in others) + " |")
    for name, m in (("applicability", gate), *((o, methods[o]) for o in others)):
        lines.append(f"| **all, {name}** | {m['kinds']} kinds | {m['n_chat']} + {m['n_factual']} | passed "
                     f"{m['passed']:.1%} ± {m['passed_sd']:.1%} · gated {m['gated']:.1%} ± {m['gated_sd']:.1%} · AUROC {m['auroc']:.3f} · balanced ECE {m['ece']:.3f} |" + " |" * len(others))
    lines += ["", "Knowledge questions by how they were asked (each held out with its source: a variant only one source "
                  "has, like `aside`, is scored by a head that never saw it):", "",
              "| asked | sources | n | gated |", "|---|---|---|---|"]
    lines += [f"| {v} | {', '.join(g['sources'])} | {g['n']} | {g['gated']:.1%} |" for v, g in gate["by_variant"].items()]
    a, b = gate["split"]["statement_then_question"], gate["split"]["other_turns"]
    if None not in (a["passed"], a["gated"], b["passed"], b["gated"]):
        lines += ["", f"Turns that state something, then ask ({', '.join(sorted(STATEMENT_SOURCES))}, `lead`): passed "
                      f"{a['passed']:.1%} of {a['n_chat']}, gated {a['gated']:.1%} of {a['n_factual']}. All other turns: "
                      f"passed {b['passed']:.1%} of {b['n_chat']}, gated {b['gated']:.1%} of {b['n_factual']}."]
    a, b = gate["instruction"]["with_instruction"], gate["instruction"]["bare"]
    if a["gated"] is not None and b["gated"] is not None:
        passed = f"passed {a['passed']:.1%} of {a['n_chat']}, " if a["passed"] is not None else ""
        lines += ["", f"Turns that end with the short-answer instruction (\"{SHORT_INSTRUCTION}\"): {passed}gated "
                      f"{a['gated']:.1%} of {a['n_factual']}. Turns asked as they are: passed {b['passed']:.1%} of "
                      f"{b['n_chat']}, gated {b['gated']:.1%} of {b['n_factual']}."]
    if "early_exit" in result:
        e = result["early_exit"]
        lines += ["", f"Decided early (the residual read alone below {e['band'][0]:g} or at {e['band'][1]:g} and "
                      f"above, no lens computed): {e['chat']:.1%} of held-out chat turns, {e['knowledge']:.1%} of "
                      f"held-out knowledge questions. Decisions that differ from the full read's alone: "
                      f"{' / '.join(map(str, e['changed']))} of {e['turns']:,} turns (per draw)."]
    for title, key in (("Not knowledge questions, gated anyway", "gated_but_not_knowledge"),
                       ("Knowledge questions that passed", "passed_but_knowledge")):
        lines += ["", f"**Failure cases — {title}** (most confident first):", "",
                  "| source | kind | turns | P(factual) | text |", "|---|---|---|---|---|"]
        lines += [f"| {f['source']} | {f['kind']} | {f['turns']} | {f['p_factual']:.3f} | "
                  f"{f['text'].replace('|', '/').replace(chr(10), ' ')} |" for f in result["failures"][key]]
    return "\n".join(lines) + "\n"


def sweep_C(directory: Path, values: list[float], threshold: float = FACTUAL_THRESHOLD) -> str:
    """Leave-one-source-out shares and AUROC at each regularisation strength: how the default C was chosen."""
    rows, feats, meta = load_dataset(directory)
    y = np.array([int(is_factual(r)) for r in rows])
    lines = ["| C | passed | gated | AUROC |", "|---|---|---|---|"]
    for c in values:
        with threadpool_limits(1):
            p = held_out_predictions(rows, feats, y, meta["signature"], C=(c,), ablate=False)["applicability"]
            s = summarise(rows, y, p, threshold)
        lines.append(f"| {c:g} | {s['passed']:.1%} | {s['gated']:.1%} | {s['auroc']:.3f} |")
        print(lines[-1], flush=True)
    return "\n".join(lines) + "\n"


def evaluate(directory: Path, out: Path, limit: int | None = None, threshold: float = FACTUAL_THRESHOLD,
             draws: int = 3) -> dict:
    """Every share and score is the mean over `draws` leave-one-source-out runs, each fit with another inner
    validation part (where the Platt calibration, hence the threshold's place, is fitted); `passed_sd` /
    `gated_sd` give their spread. Failure cases are those of the first draw."""
    rows, feats, meta = load_dataset(directory)
    if limit:
        rows, feats = rows[:limit], feats[:limit]
    y = np.array([int(is_factual(r)) for r in rows])
    with threadpool_limits(1):
        preds = [held_out_predictions(rows, feats, y, meta["signature"], seed=d) for d in range(draws)]
    runs = {m: [summarise(rows, y, p[m], threshold) for p in preds] for m in preds[0]}
    methods = {m: mean_over(r) | {f"{k}_sd": float(np.std([x[k] for x in r])) for k in ("passed", "gated")}
               for m, r in runs.items()}
    result = {"protocol": f"leave-one-source-out: each source's turns scored by a head trained on the others; "
                          f"mean over {draws} inner validation draws",
              "methods": methods, "failures": failures(rows, y, preds[0]["applicability"], threshold)}
    if EARLY_READ in preds[0]:  # the cascade: which turns its early read decides alone (no lens computed)
        band = Applicability.defaults["early"]
        exits = [decided_early(p[EARLY_READ], band) for p in preds]
        # What exiting early costs: turns whose decision differs from the full read's alone, per draw.
        changed = [int(((p["applicability"] >= threshold) != (p[FULL_READ] >= threshold)).sum()) for p in preds]
        result["early_exit"] = {"band": list(band), "chat": float(np.mean([e[y == 0].mean() for e in exits])),
                                "knowledge": float(np.mean([e[y == 1].mean() for e in exits])),
                                "changed": changed, "turns": len(rows)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "applicability.json").write_text(json.dumps(result, indent=1))
    (out / "applicability.md").write_text(table(result))
    return result


def main(argv: list[str] | None = None) -> dict:
    ap = dataset_parser("python -m training.evaluate_applicability", __doc__)
    ap.add_argument("--out", type=Path, help="where the results go (default: the dataset folder)")
    ap.add_argument("--threshold", type=float, default=FACTUAL_THRESHOLD, help="P(factual) below it passes (default: %(default)s)")
    ap.add_argument("--limit", type=int, help="use only the first N rows (smoke tests only)")
    ap.add_argument("--draws", type=int, default=3, help="runs, each with another inner validation part (default: %(default)s)")
    ap.add_argument("--C", type=float, nargs="+", help="instead: sweep these regularisation strengths (writes "
                                                        "applicability_C.md)")
    args = ap.parse_args(argv)
    directory = dataset_folder(args)
    if args.C:
        (args.out or directory).joinpath("applicability_C.md").write_text(sweep_C(directory, args.C, args.threshold))
        return {}
    result = evaluate(directory, args.out or directory, args.limit, args.threshold, args.draws)
    print(table(result))
    return result


if __name__ == "__main__":
    main()

"""End to end on held-out questions: baseline (`off`) vs `seed` vs `gate`, through the served pipeline.

    python -m training.evaluate_seeding [--limit 300] [--max-tokens 32]

Every question is asked as it is served (Gate.chat, greedy, the dataset's prompt wording). `gate` differs
from `seed` only below the low band, where it returns the configured abstention without generating;
greedy decoding is deterministic, so its other replies are the `seed` replies (not generated twice).

A reply is scored: correct if a gold/alias matches its first line (the dataset's labelling rule);
else abstained if it says it does not know, opens by describing itself or apologising, or only voices
doubt ("I'm not sure."); else wrong. A wrong reply is "confident" unless it hedges, in the model's words or
in the opening the gate writes before them (policy.openings, for a model without a thinking channel).
Metrics: accuracy on answered, share of wrong answers stated confidently (and of all questions),
share of the baseline's correct answers kept, abstention rate, effective reliability
(+1 correct, −1 wrong, 0 abstained; mean over questions, with a bootstrap 95% interval).
"""
from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from training.build_dataset import messages_of
from gate.config import FACTUAL_THRESHOLD, Bands
from gate.models import known
from gate.normalize import matches
from gate.policy import decide, opening_text
from training.sources import Example
from training.splits import load_splits
from training.store import (SOURCE_TEXT, dataset_folder, dataset_index, dataset_parser, load_examples,
                            load_rows, save_rows, step_settings, teaches_knows)

ABSTAINS = re.compile(r"\b(i (do not|don't|dont) know|i'm not able to answer|i am not able to answer|i cannot answer|"
                      r"i can't answer|no idea|i'm not aware|i am not aware|i won't guess|i will not guess|"
                      r"i (do not|don't) have (enough )?information)\b", re.I)
# The default model declines by describing itself or apologising rather than saying "I don't know".
DECLINES = re.compile(r"^\s*(i'm|i am) (a|an|here|sorry|just)\b", re.I)
HEDGES = re.compile(r"\b(not (sure|certain)|uncertain|i think|i believe|might|may be|maybe|possibly|perhaps|"
                    r"probably|likely|if i recall|best (guess|attempt))\b", re.I)
MODES = ("off", "seed", "gate")


@dataclass(frozen=True)
class GateWords:
    """What the gate itself writes into the replies a user sees: the abstention that stands for an abstain
    decision in `gate` mode, and the opening before a seeded reply (by decision; policy.openings)."""
    abstention: str
    openings: dict[str, str] = field(default_factory=dict)

    def shown(self, decision: str, reply: str) -> str:
        """A seeded reply as the user reads it: the gate's opening, then the model's words."""
        opening = self.openings.get(decision, "")
        return f"{opening} {reply}" if opening else reply


def score(reply: str, golds: list[str], abstention: str) -> str:
    """correct / abstained / wrong (the dataset's first-line matching rule for correct)."""
    if reply == abstention:
        return "abstained"
    if matches(reply, golds):
        return "correct"
    only_doubt = not re.sub(r"\W+", "", HEDGES.sub("", re.sub(r"\b(i'm|i am)\b", "", reply, flags=re.I)))
    return "abstained" if ABSTAINS.search(reply) or DECLINES.search(reply) or only_doubt else "wrong"


def held_out(directory: Path, split: str, limit: int | None) -> list[dict]:
    """The test part of a split the sidecar was not trained on (splits.json, made by training.train)."""
    rows = load_examples(directory / "examples.jsonl")  # question and golds read back from the source packages
    test = [rows[i] for i in load_splits(directory / "splits.json", rows)[split]["test"]]
    return [r for r in test if teaches_knows(r)][:limit]   # knowledge questions P(knows) is measured on


def metrics(outcomes: list[str], confident: list[bool], base_correct: list[bool], rng: np.random.Generator) -> dict:
    o = np.array(outcomes)
    correct, wrong, abstained = o == "correct", o == "wrong", o == "abstained"
    conf_wrong = wrong & np.array(confident)
    answered = int((~abstained).sum())
    base = np.array(base_correct)
    er = correct.astype(float) - wrong.astype(float)
    boot = [er[rng.integers(0, len(er), len(er))].mean() for _ in range(2000)]
    return {
        "n": len(o), "correct": int(correct.sum()), "wrong": int(wrong.sum()), "abstained": int(abstained.sum()),
        "accuracy_on_answered": float(correct.sum() / answered) if answered else None,
        "confident_wrong_share_of_wrong": float(conf_wrong.sum() / wrong.sum()) if wrong.any() else None,
        "confident_wrong_rate": float(conf_wrong.mean()),
        "correct_kept": float((correct & base).sum() / base.sum()) if base.any() else None,
        "abstention_rate": float(abstained.mean()),
        "effective_reliability": float(er.mean()),
        "effective_reliability_ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
    }


SEEDED = ("answer", "hedge", "abstain")  # the decisions that seed a reply; `pass` is answered plainly (= off)
FORCE = {"answer": (0.0, 0.0), "hedge": (0.0, 1.0), "abstain": (1.0, 1.0)}  # bands that force each decision
GRID = tuple(round(0.05 * k, 2) for k in range(21))             # band edges the frontier tries


def run_key(gate, max_tokens: int) -> str:
    """What a logged reply depends on besides the question: the budget, the seed texts, the decisions the model's
    profile seeds as a hidden prefill, the sidecar's weights (the seed quotes P(knows)) and the model's dtype.
    Not the bands or the threshold (every seed's reply is logged, so any bands are scored from the same rows), not
    the openings (the model never reads them; they are added when scoring) and not the applicability head
    (`head_key`): rows logged under another run key (a retrained sidecar, other seeds) are asked again."""
    from gate.sidecar import FILE
    policy = gate.settings.policy.model_dump(mode="json", exclude={"bands", "factual_threshold", "mode", "openings"})
    key = [max_tokens, policy, str(gate.engine.dtype)]
    if (written := sorted(gate.engine.profile.prefill_seeds)) != sorted(SEEDED):  # all three: rows logged before stay
        key.append(written)
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode())
    digest.update(_checkpoint(gate, FILE).read_bytes())
    return digest.hexdigest()[:16]


def head_key(gate) -> str:
    """The applicability head's weights: a row read by another head gets its P(factual) again from a probe (no
    generation), since that number alone depends on it."""
    from gate.applicability import FILE
    path = _checkpoint(gate, FILE)
    return hashlib.sha1(path.read_bytes() if path.exists() else b"").hexdigest()[:16]


def _checkpoint(gate, name: str) -> Path:
    from gate.sidecar import sidecar_dir
    return sidecar_dir(gate.settings, gate.engine.model_id) / name


def evaluate(gate, rows: list[dict], max_tokens: int, log: Path) -> list[dict]:
    """Ask every question plainly (`off`) and under each seed (answer, hedge, abstain: the decision forced by
    bands); each row is appended to `log` at once, and rows already there (same `run_key`) are reused, so an
    interrupted run resumes where it stopped. The log holds ids and the model's own replies (without the gate's
    opening), never the source packages' text (their licences)."""
    from gate.turns import TurnOverrides
    key, head = run_key(gate, max_tokens), head_key(gate)
    done = {r["id"]: r for r in (load_rows(log) if log.exists() else []) if r.get("run") == key}
    out = []
    with log.open("a", encoding="utf-8") as sink:
        for row in tqdm(rows, unit="q", desc="seeding"):
            messages, changed = messages_of(Example.of(row)), True
            if row["id"] not in done:
                replies = {"off": gate.chat(messages, TurnOverrides(mode="off", max_tokens=max_tokens)).content}
                for decision in SEEDED:
                    seeded = gate.chat(messages, TurnOverrides(mode="seed", max_tokens=max_tokens,
                                                               bands=FORCE[decision], factual_threshold=0.0))
                    replies[decision] = seeded.content.removeprefix(seeded.gate.opening).lstrip()
                done[row["id"]] = {
                    "id": row["id"], "source": row["source"], "category": row["category"], "label": row.get("label"),
                    "dataset_prediction": row.get("prediction"), "max_tokens": max_tokens, "run": key, "head": head,
                    "p_knows": seeded.gate.p_knows, "p_factual": seeded.gate.p_factual, "replies": replies}
            elif done[row["id"]].get("head") != head:
                done[row["id"]] |= {"head": head, "p_factual": gate.probe(messages).gate.p_factual}
            else:
                changed = False
            if changed:
                sink.write(json.dumps(done[row["id"]], ensure_ascii=False) + "\n")
                sink.flush()
            out.append({k: v for k, v in done[row["id"]].items() if k not in SOURCE_TEXT})
    save_rows(log, out)  # canonical: this run's questions in order, without source text
    return [{**r, "golds": row["golds"]} for r, row in zip(out, rows)]


def outcomes(results: list[dict], words: GateWords, bands: Bands, threshold: float) -> dict[str, tuple]:
    """Per mode, each question's (outcome, confident) under these bands: `seed` answers with the reply of the
    decided seed (`pass`: the plain reply), `gate` replaces an abstain seed's reply with the abstention. The
    outcome is the model's words' (or the abstention's); confident also reads the gate's opening."""
    decisions = [decide(r["p_knows"], bands, r.get("p_factual"), threshold) for r in results]
    replies = {"off": [r["replies"]["off"] for r in results],
               "seed": [r["replies"]["off" if d == "pass" else d] for r, d in zip(results, decisions)]}
    replies["gate"] = [words.abstention if d == "abstain" else s for s, d in zip(replies["seed"], decisions)]
    shown = {"off": replies["off"], "seed": [words.shown(d, x) for x, d in zip(replies["seed"], decisions)]}
    shown["gate"] = [words.abstention if d == "abstain" else s for s, d in zip(shown["seed"], decisions)]
    return {m: ([_score(x, tuple(r["golds"]), words.abstention) for x, r in zip(texts, results)],
                [not HEDGES.search(x) for x in shown[m]]) for m, texts in replies.items()} | {"decisions": decisions}


@functools.lru_cache(maxsize=1 << 16)
def _score(reply: str, golds: tuple[str, ...], abstention: str) -> str:
    """`score`, memoised: the frontier scores the same few replies for hundreds of band pairs."""
    return score(reply, list(golds), abstention)


def summarise(results: list[dict], words: GateWords, bands: Bands, threshold: float = FACTUAL_THRESHOLD,
              seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    scored = outcomes(results, words, bands, threshold)
    base_correct = [o == "correct" for o in scored["off"][0]]
    by_decision = {}
    for d in ("pass", "answer", "hedge", "abstain"):
        idx = [i for i, x in enumerate(scored["decisions"]) if x == d]
        accuracy = float(np.mean([base_correct[i] for i in idx])) if idx else None
        by_decision[d] = {"n": len(idx), "baseline_accuracy": accuracy}
    same = [r["replies"]["off"].strip() == (r.get("dataset_prediction") or "").strip() for r in results]
    return {"modes": {m: metrics(*scored[m], base_correct, rng) for m in MODES},
            "by_decision": by_decision, "baseline_equals_dataset_prediction": float(np.mean(same)),
            "trade_off": trade_off(results, words, bands, threshold)}


def trade_off(results: list[dict], words: GateWords, bands: Bands, threshold: float) -> dict:
    """`gate` mode at these bands: the share of the baseline's correct answers kept and of its confidently
    wrong answers removed (abstained on, or turned into a hedge)."""
    scored = outcomes(results, words, bands, threshold)
    off, off_conf = map(np.array, scored["off"])
    base_correct, base_cw = off == "correct", (off == "wrong") & off_conf
    o, conf = map(np.array, scored["gate"])
    return {"low": bands.low, "high": bands.high,
            "correct_kept": float((base_correct & (o == "correct")).sum() / max(base_correct.sum(), 1)),
            "confident_wrong_removed": float((base_cw & ~((o == "wrong") & conf)).sum() / max(base_cw.sum(), 1))}


def frontier(results: list[dict], words: GateWords, threshold: float) -> list[dict]:
    """The Pareto front of `trade_off` over every pair of band edges on GRID. Describes these questions; the
    bands to configure come from validation (metrics.json → bands)."""
    return pareto(all_pairs(results, words, threshold))


def pareto(points: list[dict]) -> list[dict]:
    """For each share of correct answers kept, the pair that removes the most (and only if no pair keeping as
    much removes more)."""
    front, most = [], -1.0  # keep a pair only if no pair that keeps as much removes more
    for p in sorted(points, key=lambda p: (-p["correct_kept"], -p["confident_wrong_removed"])):
        if p["confident_wrong_removed"] > most:
            front.append(p)
            most = p["confident_wrong_removed"]
    return front


def all_pairs(results: list[dict], words: GateWords, threshold: float) -> list[dict]:
    return [trade_off(results, words, Bands(low=low, high=high), threshold)
            for low in GRID for high in GRID if high >= low]


def figure(points: list[dict], marked: dict[str, dict], path: Path, title: str) -> Path:
    """Every band pair as a dot, the front as a line, the configured and recommended bands marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 5))
    ax.scatter([p["confident_wrong_removed"] for p in points], [p["correct_kept"] for p in points], s=8,
               color="#bbb", label="a pair of bands (0.05 grid)")
    front = pareto(points)
    ax.plot([p["confident_wrong_removed"] for p in front], [p["correct_kept"] for p in front], color="#4c78a8",
            lw=2, label="best trade-off")
    for (name, p), color in zip(marked.items(), ("#e45756", "#54a24b")):
        ax.scatter([p["confident_wrong_removed"]], [p["correct_kept"]], s=60, color=color, zorder=3,
                   label=f"{name} {p['low']:.2f}/{p['high']:.2f}")
    ax.axhline(0.9, color="#555", ls=":", lw=1)
    ax.axvline(0.5, color="#555", ls=":", lw=1)
    ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xlabel="confidently wrong answers removed (abstained or hedged)",
           ylabel="correct answers kept", title=title)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown(runs: dict[str, dict], front: list[dict], info: dict) -> str:
    """One table of the three modes per set of bands, then the frontier."""
    fmt = lambda x: "–" if x is None else f"{x:.3f}"  # noqa: E731
    lines = [f"# Seeding evaluation — {info['model']}", "",
             f"{info['n']} held-out questions ({info['split']} split), greedy, ≤{info['max_tokens']} tokens, "
             f"applicability threshold {info['factual_threshold']}. {info['note']}", ""]
    if written := {d: o for d, o in info.get("openings", {}).items() if o}:
        lines += ["The gate opens seeded replies with " + ", ".join(f"{d}: \"{o}\"" for d, o in written.items()) +
                  " (policy.openings: the model never reads it; it counts as the reply's hedge).", ""]
    for name, run in runs.items():
        summary, (low, high) = run["summary"], run["bands"]
        lines += [f"## {name} bands: low={low} high={high}", "",
                  "| mode | accuracy on answered | confident wrong / wrong | confident wrong / all | correct kept | "
                  "abstention | effective reliability (95% CI) |", "|---|---|---|---|---|---|---|"]
        for m, x in summary["modes"].items():
            lo, hi = x["effective_reliability_ci95"]
            lines.append(f"| {m} | {fmt(x['accuracy_on_answered'])} | {fmt(x['confident_wrong_share_of_wrong'])} | "
                         f"{fmt(x['confident_wrong_rate'])} | {fmt(x['correct_kept'])} | {fmt(x['abstention_rate'])} | "
                         f"{x['effective_reliability']:+.3f} ({lo:+.3f}, {hi:+.3f}) |")
        lines += ["", "Baseline accuracy by the gate's decision: " + ", ".join(
            f"{d} {v['n']} questions ({fmt(v['baseline_accuracy'])})" for d, v in summary["by_decision"].items()), ""]
    summary = next(iter(runs.values()))["summary"]
    lines += ["## Frontier of `gate` mode over band pairs (these questions)", "",
              "For each share of the baseline's correct answers kept, the band pair (on a 0.05 grid) that removes the "
              "most of its confidently wrong answers (abstained, or hedged). It describes these test questions; "
              "configure bands chosen on validation (the recommended ones), not the best row here.", "",
              "| correct kept | confidently wrong removed | low | high |", "|---|---|---|---|"]
    lines += [f"| {p['correct_kept']:.3f} | {p['confident_wrong_removed']:.3f} | {p['low']} | {p['high']} |"
              for p in front]
    lines += ["", f"The `off` replies equal the dataset's (batched) greedy predictions for "
              f"{summary['baseline_equals_dataset_prediction']:.0%} of the questions.", "",
              "Scoring: correct = a gold or alias in the reply's first line; abstained = the reply says it does not "
              "know, opens by describing itself or apologising, or only voices doubt; confident = a wrong reply "
              "without a hedge word. Every question is asked plainly and under each seed, so every set of bands is "
              "scored from the same replies. Regenerate with `python -m training.evaluate_seeding`."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    ap = dataset_parser("python -m training.evaluate_seeding", __doc__)
    ap.add_argument("--split", default="random", choices=("random", "cross_domain"),
                    help="whose test part to ask (default: %(default)s, the split the shipped sidecar was trained on)")
    ap.add_argument("--limit", type=int, default=300, help="test questions to ask (default: %(default)s)")
    ap.add_argument("--max-tokens", type=int, help="reply budget (default: the dataset's, so labels compare)")
    ap.add_argument("--threads", type=int, help="torch CPU threads")
    args = ap.parse_args(argv)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    settings = step_settings(args)
    directory = dataset_folder(args)
    rows = held_out(directory, args.split, args.limit)
    max_tokens = args.max_tokens or dataset_index(directory)[1]["max_new_tokens"]
    from gate.pipeline import Gate
    gate = Gate(settings)
    if gate.sidecar is None:
        raise SystemExit(f"no sidecar checkpoint for {settings.model.id}: train one first (python -m training.train)")
    results = evaluate(gate, rows, max_tokens, directory / "seeding_rows.jsonl")
    policy = settings.policy
    bands = {"configured": policy.bands}
    metrics_file = directory / "metrics.json"
    if metrics_file.exists() and "bands" in (recommended := json.loads(metrics_file.read_text())):
        bands["recommended (validation)"] = Bands(low=recommended["bands"]["low"], high=recommended["bands"]["high"])
    words = GateWords(policy.abstention, {d: opening_text(policy.openings, d, gate.engine.thinking.has_channel)
                                          for d in SEEDED})
    runs = {name: {"bands": [b.low, b.high], "summary": summarise(results, words, b, policy.factual_threshold)}
            for name, b in bands.items()}
    info = {"model": settings.model.id, "split": f"{args.split}/test", "n": len(results), "max_tokens": max_tokens,
            "factual_threshold": policy.factual_threshold, "seeds": policy.seeds.model_dump(),
            "abstention": policy.abstention, "openings": words.openings,
            "note": f"The weights are {m.title}, dequantised." if (m := known(settings.model.id)) else ""}
    points = all_pairs(results, words, policy.factual_threshold)  # bands-independent: swept once
    front = pareto(points)
    (directory / "seeding.json").write_text(json.dumps({**info, "runs": runs, "frontier": front}, indent=2) + "\n")
    figure(points, {name: run["summary"]["trade_off"] for name, run in runs.items()},
           directory / "figures" / "seeding_frontier.png", f"gate mode on {len(results)} held-out questions")
    report = markdown(runs, front, info)
    (directory / "seeding.md").write_text(report)
    print(report)
    return runs


if __name__ == "__main__":
    main()

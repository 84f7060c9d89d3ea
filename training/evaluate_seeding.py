"""End to end on held-out questions: baseline (`off`) vs `seed` vs `gate`, through the served pipeline.

    python -m training.evaluate_seeding [--limit 300] [--max-tokens 32]

Every question is asked as it is served (Gate.chat, greedy, the dataset's prompt wording). `gate` differs
from `seed` only below the low band, where it returns the configured abstention without generating;
greedy decoding is deterministic, so its other replies are the `seed` replies (not generated twice).

A reply is scored: correct if a gold/alias matches its first line (the dataset's labelling rule);
else abstained if it says it does not know, opens by describing itself or apologising, or only voices
doubt ("I'm not sure."); else wrong. A wrong reply is "confident" unless it hedges.
Metrics: accuracy on answered, share of wrong answers stated confidently (and of all questions),
share of the baseline's correct answers kept, abstention rate, effective reliability
(+1 correct, −1 wrong, 0 abstained; mean over questions, with a bootstrap 95% interval).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gate.config import load_settings
from gate.engine.loading import model_slug
from training.build_dataset import messages_of
from gate.normalize import matches
from training.sources import Example
from training.splits import load_splits
from training.store import SOURCE_TEXT, data_dir, is_factual, load_examples, load_features, load_rows, save_rows

ABSTAINS = re.compile(r"\b(i (do not|don't|dont) know|i'm not able to answer|i am not able to answer|i cannot answer|"
                      r"i can't answer|no idea|i'm not aware|i am not aware|i won't guess|i will not guess|"
                      r"i (do not|don't) have (enough )?information)\b", re.I)
# The default model declines by describing itself or apologising rather than saying "I don't know".
DECLINES = re.compile(r"^\s*(i'm|i am) (a|an|here|sorry|just)\b", re.I)
HEDGES = re.compile(r"\b(not (sure|certain)|uncertain|i think|i believe|might|may be|maybe|possibly|perhaps|"
                    r"probably|likely|if i recall|best (guess|attempt))\b", re.I)
MODES = ("off", "seed", "gate")


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
    return [r for r in test if is_factual(r)][:limit]   # knowledge questions: the ones with golds


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


def run_key(gate, max_tokens: int) -> str:
    """What a reply depends on besides the question: the budget, the policy (bands, threshold, seed texts) and
    the checkpoint files. Rows logged under another key (a retrained sidecar, other bands) are asked again."""
    from gate.sidecar import sidecar_dir
    policy = gate.settings.policy
    ckpt = sidecar_dir(gate.settings, gate.engine.model_id)
    digest = hashlib.sha1(json.dumps([max_tokens, policy.model_dump(mode="json")], sort_keys=True).encode())
    for path in sorted(ckpt.glob("*.npz")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def evaluate(gate, rows: list[dict], max_tokens: int, log: Path) -> list[dict]:
    """Ask every question in `off` and `seed` mode; each answered row is appended to `log` at once, and
    rows already there (same `run_key`) are reused, so an interrupted run resumes where it stopped.
    The log holds ids and the model's replies, never the source packages' text (their licences)."""
    from gate.turns import TurnOverrides
    key = run_key(gate, max_tokens)
    done = {r["id"]: r for r in (load_rows(log) if log.exists() else []) if r.get("run") == key}
    out = []
    with log.open("a", encoding="utf-8") as sink:
        for row in tqdm(rows, unit="q", desc="seeding"):
            if row["id"] not in done:
                example = Example(**{k: row[k] for k in Example.__annotations__ if k in row})
                messages = messages_of(example)
                off = gate.chat(messages, TurnOverrides(mode="off", max_tokens=max_tokens))
                seed = gate.chat(messages, TurnOverrides(mode="seed", max_tokens=max_tokens))
                gated = gate.settings.policy.abstention if seed.gate.decision == "abstain" else seed.content
                done[row["id"]] = {
                    "id": row["id"], "source": row["source"], "category": row["category"], "label": row.get("label"), "dataset_prediction": row.get("prediction"), "max_tokens": max_tokens, "run": key,
                    "p_knows": seed.gate.p_knows, "decision": seed.gate.decision,
                    "replies": {"off": off.content, "seed": seed.content, "gate": gated}}
                sink.write(json.dumps(done[row["id"]], ensure_ascii=False) + "\n")
                sink.flush()
            out.append({k: v for k, v in done[row["id"]].items() if k not in SOURCE_TEXT})
    save_rows(log, out)  # canonical: this run's questions in order, without source text
    return [{**r, "golds": row["golds"]} for r, row in zip(out, rows)]


def summarise(results: list[dict], abstention: str, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    outcome = {m: [score(r["replies"][m], r["golds"], abstention) for r in results] for m in MODES}
    confident = {m: [not HEDGES.search(r["replies"][m]) for r in results] for m in MODES}
    base_correct = [o == "correct" for o in outcome["off"]]
    by_decision = {}
    for d in ("pass", "answer", "hedge", "abstain"):
        idx = [i for i, r in enumerate(results) if r["decision"] == d]
        accuracy = float(np.mean([base_correct[i] for i in idx])) if idx else None
        by_decision[d] = {"n": len(idx), "baseline_accuracy": accuracy}
    same = [r["replies"]["off"].strip() == (r.get("dataset_prediction") or "").strip() for r in results]
    return {"modes": {m: metrics(outcome[m], confident[m], base_correct, rng) for m in MODES},
            "by_decision": by_decision, "baseline_equals_dataset_prediction": float(np.mean(same))}


def markdown(summary: dict, info: dict) -> str:
    lines = [f"# Seeding evaluation — {info['model']}", "",
             f"{info['n']} held-out questions ({info['split']} split), greedy, ≤{info['max_tokens']} tokens, bands "
             f"low={info['bands'][0]} high={info['bands'][1]}. {info['note']}", "",
             "| mode | accuracy on answered | confident wrong / wrong | confident wrong / all | correct kept | "
             "abstention | effective reliability (95% CI) |", "|---|---|---|---|---|---|---|"]
    fmt = lambda x: "–" if x is None else f"{x:.3f}"  # noqa: E731
    for m, s in summary["modes"].items():
        lo, hi = s["effective_reliability_ci95"]
        lines.append(f"| {m} | {fmt(s['accuracy_on_answered'])} | {fmt(s['confident_wrong_share_of_wrong'])} | "
                     f"{fmt(s['confident_wrong_rate'])} | {fmt(s['correct_kept'])} | {fmt(s['abstention_rate'])} | "
                     f"{s['effective_reliability']:+.3f} ({lo:+.3f}, {hi:+.3f}) |")
    lines += ["", "Baseline accuracy by the gate's decision: " + ", ".join(
        f"{d} {v['n']} questions ({fmt(v['baseline_accuracy'])})" for d, v in summary["by_decision"].items()), "",
        f"The `off` replies equal the dataset's (batched) greedy predictions for "
        f"{summary['baseline_equals_dataset_prediction']:.0%} of the questions.", "",
        "Scoring: correct = a gold or alias in the reply's first line; abstained = the reply says it does not "
        "know, opens by describing itself or apologising, or only voices doubt; confident = a wrong reply "
        "without a hedge word. Regenerate with `python -m training.evaluate_seeding`."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m training.evaluate_seeding", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="gate.yaml to use (default: $GATE_CONFIG or the repo's gate.yaml)")
    ap.add_argument("--split", default="random", choices=("random", "cross_domain"),
                    help="whose test part to ask (default: %(default)s, the split the shipped sidecar was trained on)")
    ap.add_argument("--limit", type=int, default=300, help="test questions to ask (default: %(default)s)")
    ap.add_argument("--max-tokens", type=int, help="reply budget (default: the dataset's, so labels compare)")
    args = ap.parse_args(argv)
    settings = load_settings(args.config)
    directory = data_dir(model_slug(settings.model.id))
    rows = held_out(directory, args.split, args.limit)
    max_tokens = args.max_tokens or load_features(directory / "features.npz")[2]["max_new_tokens"]
    from gate.pipeline import Gate
    gate = Gate(settings)
    if gate.sidecar is None:
        raise SystemExit(f"no sidecar checkpoint for {settings.model.id}: train one first (python -m training.train)")
    results = evaluate(gate, rows, max_tokens, directory / "seeding_rows.jsonl")
    summary = summarise(results, settings.policy.abstention)
    bands = settings.policy.bands
    info = {"model": settings.model.id, "split": f"{args.split}/test", "n": len(results),
            "max_tokens": max_tokens, "bands": [bands.low, bands.high],
            "seeds": settings.policy.seeds.model_dump(), "abstention": settings.policy.abstention,
            "note": "The default model's weights went through 4-bit quantisation (GGUF Q4_1) before conversion."
            if settings.model.id == "smollm2-135m-instruct" else ""}
    (directory / "seeding.json").write_text(json.dumps({**info, **summary}, indent=2) + "\n")
    (directory / "seeding.md").write_text(markdown(summary, info))
    print(markdown(summary, info))
    return summary


if __name__ == "__main__":
    main()

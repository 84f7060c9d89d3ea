"""What does the model write first after a seed? Checks a model's `after_seed` (gate/models.py) on real turns.

    .venv/bin/python bench/check_after_seed.py [--model qwen2.5-coder-1.5b-instruct] [--turns 40] [--after-seed TEXT]

For knowledge questions of the model's shipped dataset (data/<model>/examples.jsonl, a fixed random sample) and
each of the three seeds, greedy decoding after the seed's opening alone: how often the first generated token is
each token (a model that always writes the same one gets it as `after_seed`), and, when the profile (or
`--after-seed`) names one, whether the reply generated with it fed after the seed is the free reply without its
first token. Fed, it saves a seeded turn one decode step before its first visible token; the same token the model
would write keeps the reply the same up to the arithmetic's rounding (bfloat16 rounds differently when a token is
computed in the prefill rather than decoded; compare in float32).
"""
from __future__ import annotations

import argparse
import collections
import random

from tqdm import tqdm

from common import add_model_args, settings_from
from gate.engine.chat import seed_opening
from gate.engine.generate import SamplingParams
from gate.engine.loading import model_slug
from gate.engine.runtime import Engine
from gate.policy import seed_text
from gate.sidecar import data_dir
from training.sources import by_id
from training.store import is_factual, load_rows

DECISIONS = ("answer", "hedge", "abstain")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_args(ap)
    ap.set_defaults(dtype="float32")  # compares exactly; auto = the served dtype
    ap.add_argument("--turns", type=int, default=40, help="knowledge questions sampled from the shipped dataset")
    ap.add_argument("--max-tokens", type=int, default=32, help="tokens compared per reply")
    ap.add_argument("--after-seed", default=None, help="text to check instead of the profile's after_seed")
    args = ap.parse_args()
    settings = settings_from(args)
    if args.after_seed is not None:
        settings = settings.model_copy(update={"model": settings.model.model_copy(update={"after_seed": args.after_seed})})
    model = settings.model.id
    engine = Engine(settings)
    rows = [r for r in load_rows(data_dir(model_slug(model)) / "examples.jsonl") if is_factual(r)]
    rows = random.Random(0).sample(rows, min(args.turns, len(rows)))
    examples, params = by_id(rows), SamplingParams(args.max_tokens, 0.0, 1.0, None, [])
    fed = engine.profile.after_seed
    firsts: collections.Counter = collections.Counter()
    same = 0
    for row in tqdm(rows, desc="turns"):
        messages = examples[row["id"]].messages()
        prompt = engine.prompt(messages)
        ids = engine.tokens(prompt)
        for decision in DECISIONS:
            seed = seed_text(settings.policy.seeds, decision, 0.5)
            free = list(engine.read(ids, probe=False).tokens(engine.tokens(seed_opening(prompt, engine.thinking, seed)),
                                                            params))
            firsts[engine.tokenizer.decode(free[:1])] += 1
            if fed:
                forced = list(engine.read(ids, probe=False).tokens(engine.seed_ids(prompt, seed), params))
                same += free[1:] == forced[:len(free) - 1]
    n = len(rows) * len(DECISIONS)
    print(f"\n{model}, {engine.dtype}, {len(rows)} knowledge questions x {len(DECISIONS)} seeds = {n} replies\n")
    print("| first token after the seed | replies | share |\n|---|---|---|")
    for text, count in firsts.most_common(5):
        print(f"| {text!r} | {count} | {count / n:.1%} |")
    if fed:
        print(f"\nafter_seed {fed!r} fed with the seed: {same} of {n} replies equal the free reply without its "
              f"first token ({same / n:.1%})")


if __name__ == "__main__":
    main()

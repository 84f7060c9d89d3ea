"""The one chat-turn entry point every adapter uses: messages + overrides in, a gated reply out.

A turn runs ONE prompt forward: the probe (with hooks) is also the generation's prefill. The applicability
head reads its features as P(factual) — a turn that is not a knowledge question passes untouched — and the
sidecar turns them into P(knows); the policy picks a band, the seed opens the thought, and decoding
continues from the probe's KV cache (the seed's tokens are one more forward on that cache; the prompt is
never run twice; on vLLM the probe is a session of one request, which a turn that passes continues from its
first sampled token and a seeded one continues with the seed, computing only the seed's tokens). In `off` mode
the prompt forward runs without hooks (the baseline). `gate` mode below the low band returns the configured
abstention without generating.

A stream yields GateView (before any generated token), then Delta pieces (the seed first, on the
reasoning channel, when the model has a thinking channel), then the TurnResult; joining the Deltas of a
channel gives exactly that channel's text in the result. Stop strings apply to the answer (content).

The engine (gate/engine/base.py) does the model work: the transformers engine in this process, or vLLM.
Thread safety: each turn holds `Gate.lock` (the engine's `turn_lock`) from its prompt read to its last
token. The transformers engine serves one turn at a time (a plain `threading.Lock`; waiting turns are
admitted in whatever order the OS wakes them, no strict FIFO); the vLLM engine's lock is a no-op, so many
turns run at once, batched by vLLM. A stream holds the lock until it is exhausted or closed, so adapters
must close a stream they abandon (a client that disconnects).
Validation, templating and tokenisation run in the caller's thread before the lock (tokenisation never
pads, so the shared fast tokenizer is never reconfigured under a concurrent turn).
Timings count from the moment the turn gets the model; time spent waiting for the lock is excluded.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterator

from pydantic import ValidationError

from gate.config import Bands, GenerationSettings, Settings
from gate.engine.chat import normalize_messages, opens_thought
from gate.engine.features import Features
from gate.engine.base import ReadPrompt, TurnEngine, load_engine
from gate.engine.generate import SamplingParams
from gate.engine.reply import ReplySplitter
from gate.policy import decide, opening_text, resolve_bands, resolve_threshold, seed_text
from gate.turns import Delta, GateView, Mode, PromptTooLong, TurnError, TurnEvent, TurnOverrides, TurnResult

LENS_TOP_K = 5  # tokens shown per layer by the probe view
_LOAD = object()  # Gate's default: load the sidecar / applicability checkpoints made for the served model


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000


@dataclass
class ProbeReport:
    """What `gate probe` and the UI's Probe tab show: the gate's reading of a prompt, nothing generated."""
    gate: GateView
    prompt: str                              # the prompt text exactly as served
    prompt_tokens: int
    features: Features                       # one row: layer [1, L, F], globals [1, G], hidden, top_tokens
    lens: list[list[tuple[str, float]]]      # per layer: top tokens of the logit lens at the final position


@dataclass
class _Turn:
    """A validated request, ready to run."""
    mode: Mode
    bands: Bands
    factual_threshold: float
    params: SamplingParams
    prompt: str
    ids: list[int]
    span: tuple[int, int]  # the latest user message's tokens in `ids`


class Gate:
    """A loaded engine + its sidecar + the policy, serving chat turns (as many at once as the engine can)."""

    def __init__(self, settings: Settings, engine: TurnEngine | None = None, sidecar: Any = _LOAD,
                 applicability: Any = _LOAD):
        """`sidecar` / `applicability`: by default the checkpoints for this model (None if there are none);
        tests pass their own."""
        self.settings = settings
        self.engine = engine or load_engine(settings)
        if sidecar is _LOAD:
            from gate.sidecar import load_for
            sidecar = load_for(self.engine)
        if applicability is _LOAD:
            from gate.applicability import load_for as load_applicability
            applicability = load_applicability(self.engine)
        self.sidecar = sidecar  # anything with predict_proba(Features) -> [B]
        self.applicability = applicability  # P(factual): predict_proba(Features, threshold=the turn's) -> [B]
        self.lock = self.engine.turn_lock
        self.eos_ids = self.engine.eos_ids
        self.context_window = self.engine.context_window

    # ---- public API -------------------------------------------------------------------------------

    def chat(self, messages: list[dict], overrides: TurnOverrides | None = None) -> TurnResult:
        """A whole turn; raises TurnError / PromptTooLong for a request it cannot serve."""
        result = None
        for event in self.stream(messages, overrides):
            result = event
        assert isinstance(result, TurnResult)
        return result

    def stream(self, messages: list[dict], overrides: TurnOverrides | None = None) -> Iterator[TurnEvent]:
        """Validate now (errors raise here, before any event), then yield GateView, Delta…, TurnResult."""
        return self.run(self.prepare(messages, overrides))

    def prepare(self, messages: list[dict], overrides: TurnOverrides | None = None) -> _Turn:
        """Validate, template and tokenise a turn without the model or its lock; raises TurnError.

        Servers call this in a worker thread before queueing: a long prompt then delays nobody else's turn.
        """
        return self._prepare(messages, overrides or TurnOverrides())

    def run(self, turn: _Turn) -> Iterator[TurnEvent]:
        """A prepared turn's events; the model lock is held from the first event until the stream ends or closes."""
        return self._run(turn)

    def probe(self, messages: list[dict], overrides: TurnOverrides | None = None) -> ProbeReport:
        """Read the prompt as it would be served and report what the gate sees; generates nothing."""
        turn = self._prepare(messages, overrides or TurnOverrides(), budget=0)
        with self.lock:
            start = time.perf_counter()
            read = self.engine.read(turn.ids, probe=True, lens_top=LENS_TOP_K, span=turn.span)
            view = self._view(turn, read.features, start)
        tok = self.engine.tokenizer
        lens = [[(tok.decode([i]), float(v)) for i, v in layer] for layer in read.lens]
        return ProbeReport(view, turn.prompt, len(turn.ids), read.features[:1], lens)

    # ---- one turn ---------------------------------------------------------------------------------

    def _prepare(self, messages: list[dict], ov: TurnOverrides, budget: int | None = None) -> _Turn:
        """Resolve overrides against the config and render the prompt; every bad input raises TurnError here."""
        cfg = self.settings
        mode = ov.mode or cfg.policy.mode
        if mode not in ("off", "seed", "gate"):
            raise TurnError(f"mode must be off, seed or gate, got {mode!r}", param="mode")
        bands = resolve_bands(cfg.policy.bands, ov.bands)
        threshold = resolve_threshold(cfg.policy.factual_threshold, ov.factual_threshold)
        gen = cfg.generation.model_dump()
        gen.update({k: v for k, v in (("max_tokens", ov.max_tokens), ("temperature", ov.temperature),
                                      ("top_p", ov.top_p)) if v is not None})
        try:
            gen = GenerationSettings(**gen)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise TurnError(f"{err['loc'][0]}: {err['msg']}", param=str(err["loc"][0])) from None
        if not isinstance(ov.stop, list) or not all(isinstance(s, str) for s in ov.stop):
            raise TurnError("stop must be a list of strings", param="stop")
        params = SamplingParams(gen.max_tokens, gen.temperature, gen.top_p, ov.seed, list(ov.stop))
        if ov.seed is not None and (isinstance(ov.seed, bool) or not isinstance(ov.seed, int)):
            raise TurnError("seed must be an integer", param="seed")
        normalized = normalize_messages(messages)
        prompt = self.engine.prompt(normalized)
        ids, span = self.engine.tokens_and_span(prompt, normalized)
        needed = len(ids) + (self._seed_room(prompt, mode) + gen.max_tokens if budget is None else budget)
        if needed > self.context_window:
            raise PromptTooLong(f"the prompt has {len(ids)} tokens; with the seed and max_tokens="
                                f"{gen.max_tokens} the turn needs {needed}, beyond the model's context window "
                                f"of {self.context_window}", param="messages", code="context_length_exceeded")
        return _Turn(mode, bands, threshold, params, prompt, ids, span)

    def _seed_room(self, prompt: str, mode: Mode) -> int:
        """Tokens the longest seed may add (0 in off mode), so a too-long turn fails before the probe."""
        if mode == "off":
            return 0
        seeds = self.settings.policy.seeds
        return max(len(self.engine.seed_ids(prompt, seed_text(seeds, d, 1.0)))
                   for d in ("answer", "hedge", "abstain"))

    def _view(self, turn: _Turn, features: Features | None, start: float) -> GateView:
        """The gate's reading; in `off` mode (no features) nothing is read or seeded, and a missing sidecar is
        said, not hidden. A turn that is not a knowledge question passes: no seed."""
        bands = (turn.bands.low, turn.bands.high)
        read = (lambda head, **at: None if head is None or features is None
                else float(head.predict_proba(features, **at)[0]))
        p, p_factual = read(self.sidecar), read(self.applicability, threshold=turn.factual_threshold)
        ms = _ms_since(start)
        if p is None:
            note = None if turn.mode == "off" else f"no sidecar for {self.engine.model_id}: not gated"
            return GateView(None, None, turn.mode, bands, None, ms, note, p_factual, turn.factual_threshold)
        decision, policy = decide(p, turn.bands, p_factual, turn.factual_threshold), self.settings.policy
        channel, seeded = self.engine.thinking.has_channel, turn.mode != "off" and decision != "pass"
        writes = seeded and (channel or decision in self.engine.profile.prefill_seeds)  # a hidden seed, if any
        seed = seed_text(policy.seeds, decision, p) if writes else None
        opening = opening_text(policy.openings, decision, channel) if seeded else ""
        return GateView(p, decision, turn.mode, bands, seed, ms, None, p_factual, turn.factual_threshold, opening)

    def _run(self, turn: _Turn) -> Iterator[TurnEvent]:
        with self.lock:
            yield from self._generate(turn)

    def _generate(self, turn: _Turn) -> Iterator[TurnEvent]:
        start = time.perf_counter()
        read = self.engine.read(turn.ids, probe=turn.mode != "off", span=turn.span, params=turn.params)
        try:
            yield from self._reply(turn, read, start)
        finally:
            read.close()

    def _reply(self, turn: _Turn, read: ReadPrompt, start: float) -> Iterator[TurnEvent]:
        engine, fmt = self.engine, self.engine.thinking
        view = self._view(turn, read.features, start)
        yield view
        prompt_tokens = len(turn.ids)

        if turn.mode == "gate" and view.decision == "abstain":
            first, text = _ms_since(start), self.settings.policy.abstention
            yield Delta("content", text)
            yield TurnResult(view, "", text, "abstain", prompt_tokens, 0, first, _ms_since(start))
            return

        seed = view.seed_text
        extra_ids = engine.seed_ids(turn.prompt, seed) if seed else []
        in_thought = opens_thought(turn.prompt, fmt) or bool(seed and fmt.has_channel)
        splitter = ReplySplitter(engine.tokenizer, fmt, in_thought, turn.params.stop)
        if seed and fmt.has_channel:  # the seed is the start of the model's visible thought
            splitter.text["reasoning"] = seed
            yield Delta("reasoning", seed)
        yield from splitter.lead(view.opening)  # what a hidden seed decided, said to the user (policy.openings)
        steps = read.tokens(extra_ids, turn.params)
        first, count, finish = None, 0, "stop" if splitter.stopped else "length"  # a stop string in the opening
        try:
            for token_id in () if splitter.stopped else steps:
                first = first if first is not None else _ms_since(start)
                if token_id in self.eos_ids:
                    finish = "stop"
                    break
                count += 1
                yield from splitter.push(token_id)
                if splitter.stopped:
                    finish = "stop"
                    break
        finally:
            steps.close()  # ends decoding at once, also when the consumer closes this stream early
        yield from splitter.finish()
        yield TurnResult(view, splitter.text["reasoning"], splitter.text["content"], finish, prompt_tokens, count,
                         first if first is not None else _ms_since(start), _ms_since(start))

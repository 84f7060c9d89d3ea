"""The vLLM engine: many turns at once, the gate read inside vLLM's own prefill.

The probe is a vLLM request for the prompt that reads the prefix cache only up to its last K positions and the
latest user message, which its own forward must compute (vllm_scheduler.py); it runs through vLLM's scheduler
with continuous batching. The worker extension (vllm_worker.py) reads the probe's internals during that
prefill, pushes its residual reads as soon as the forward has read it, computes the rest of its features off the
forward's critical path and pushes them too, as small arrays through a pipe (an authenticated Unix socket) that a
reader thread here hands to the waiting turn. The turn waits for the rest only if a head reads it
(LazyFeatures: the applicability head's early read decides most turns on the residual alone). A turn that will
generate makes its probe a vLLM streaming-input session (one request whose input comes in parts): the prompt,
sampled for one token with the turn's own sampling, then the session waits, holding the prompt's KV, for the
turn's decision. A turn that passes streams that token at once and sends it back as the session's next input, so
the reply goes on from it; a seeded turn sends the seed, and vLLM computes only the seed's tokens on the prompt's
KV (the session drops the sampled token). One request, one prefill of the prompt, whatever the decision; an
abstained turn aborts it. In `off` mode, and for the probe view, there is no session: one plain request.

vLLM's async engine (AsyncLLM) lives on its own event loop in a background thread; a turn calls it from
its worker thread and blocks on the result, so the pipeline stays the same for both engines and turns
never wait for each other (the engine's turn lock is a no-op). Closing a token stream cancels its
request, which aborts it inside vLLM.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
import uuid
from multiprocessing.connection import Listener
from typing import Any, AsyncIterator, Awaitable, Iterator, TypeVar

from transformers import AutoTokenizer

from gate.config import Settings
from gate.engine.base import LensTop, ModelShape, ReadPrompt, Span, TurnEngine, as_lens_top
from gate.engine.chat import thinking_format
from gate.engine.features import Features, LazyFeatures
from gate.engine.generate import SamplingParams, stop_token_ids
from gate.engine.loading import checked_source, resolve_device, resolve_dtype
from gate.models import features_for, profile_for
from gate.engine.vllm_worker import (COMPUTE, FULL, KEY_BYTES, LENS_TOP, PROBE, RESIDUAL, SPAN, unpack, unpack_residual,
                                     vllm_family)

log = logging.getLogger(__name__)
T = TypeVar("T")
_END = object()  # end of a token stream
# How long a probe that vLLM has run waits for its features. They are on the pipe before the probe's output
# leaves the worker unless the feature thread has a queue (probes of earlier steps: ~0.1 s each on one CPU
# core) or the hooks kept no reading of the probe at all (then this is the error's delay).
_FEATURES_WAIT_S = 300.0


class _Stream:
    """One generation request running on the engine's loop; its token ids arrive in `out` (then _END)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Future, out: queue.SimpleQueue):
        self.loop, self.task, self.out = loop, task, out

    def chunk(self) -> list[int] | None:
        """The next generated ids, None once the request ended; raises the request's error."""
        item = self.out.get()
        if isinstance(item, BaseException):
            raise item
        return None if item is _END else item

    def __iter__(self) -> Iterator[int]:
        """Generated ids as they come; closing the iterator aborts the request in vLLM."""
        try:
            while (ids := self.chunk()) is not None:
                yield from ids
        finally:
            self.cancel()

    def cancel(self) -> None:
        self.loop.call_soon_threadsafe(self.task.cancel)


class _Session:
    """A generating turn's probe: a vLLM streaming-input session whose first input, the prompt, has sampled one
    token with the turn's sampling; `inputs` takes the session's next input, (token ids, vLLM sampling), or None to
    end it."""

    def __init__(self, stream: _Stream, params: SamplingParams, inputs: asyncio.Future):
        self.stream, self.params, self.inputs = stream, params, inputs

    def send(self, chunk: tuple[list[int], Any] | None) -> None:
        self.stream.loop.call_soon_threadsafe(lambda: self.inputs.done() or self.inputs.set_result(chunk))


class _Read(ReadPrompt):
    """A prompt read by a probe (or not at all, in `off` mode). A generating turn's probe is a session (`session`)
    waiting for the turn's next input: the sampled token back (the turn passes), or the seed."""

    def __init__(self, engine: "VllmEngine", ids: list[int], features: Features | None, lens: LensTop | None,
                 session: _Session | None = None, key: str | None = None):
        self.engine, self.ids, self.features, self.lens, self.session, self.key = engine, ids, features, lens, session, key
        self.taken = False  # the session's tokens went to a caller (a second `tokens` call gets a plain request)

    def tokens(self, extra_ids: list[int], params: SamplingParams) -> Iterator[int]:
        session = None if self.taken else self.session
        self.taken = True
        if session is None:
            return self.engine.stream(self.ids + extra_ids, params)
        if extra_ids:  # the seed, on the prompt's KV; the sampled token is dropped
            session.send((extra_ids, self.engine.sampling(params)))
            return self._after(session, skip=1)
        if session.params != params:  # another sampling than the probe's: a plain request
            session.stream.cancel()
            return self.engine.stream(self.ids, params)
        return self._passed(session, params)

    def _passed(self, session: _Session, params: SamplingParams) -> Iterator[int]:
        """The plain reply: the probe's token now, then the session fed that token."""
        first = session.stream.chunk() or []  # the probe's sampled token ([]: the request ended without one)
        if not first or first[0] in self.engine.eos_ids or params.max_tokens <= 1:
            session.send(None)
            yield from first[:1]
            return
        session.send((first[:1], self.engine.sampling(params, max_tokens=params.max_tokens - 1)))
        yield first[0]
        yield from self._after(session, skip=0)

    @staticmethod
    def _after(session: _Session, skip: int) -> Iterator[int]:
        """The session's tokens after its first `skip` (the probe's sampled token, for a seeded turn)."""
        for token in session.stream:
            if skip:
                skip -= 1
                continue
            yield token

    def close(self) -> None:
        """End the session, whether or not its tokens were taken (the turn is over), and drop the features that
        nothing waited for."""
        if self.session is not None:
            self.session.stream.cancel()
            self.session = None
        if self.key is not None:
            self.engine.forget(self.key)
            self.key = None


class VllmEngine(TurnEngine):
    def __init__(self, settings: Settings):
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        from gate.engine.vllm_scheduler import CAPS_PROBES

        self.settings = settings
        source, config = checked_source(settings.model)
        text, family = config.get_text_config(), vllm_family(config)
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.profile = profile_for(settings.model)
        self.features = features_for(settings.features, settings.model)
        self.thinking = thinking_format(self.tokenizer, self.profile.thinking)
        self.model_id = settings.model.id
        self.shape = ModelShape(family, text.num_hidden_layers, text.hidden_size, text.vocab_size)
        self.device = resolve_device(settings.model.device)
        self.dtype = resolve_dtype(self.profile.dtype, self.device)
        self.eos_ids = stop_token_ids(self.tokenizer, self.profile.stop_tokens)
        self.turn_lock, self.max_turns = contextlib.nullcontext(), settings.vllm.max_turns
        self._probe_skips_cache = not CAPS_PROBES
        v = settings.vllm
        args = AsyncEngineArgs(
            model=str(source), dtype=str(self.dtype).removeprefix("torch."), block_size=v.block_size,
            enable_prefix_caching=True, enforce_eager=True,
            worker_extension_cls="gate.engine.vllm_worker.GateWorkerExtension",
            scheduler_cls="gate.engine.vllm_scheduler.GateScheduler" if CAPS_PROBES else None,
            kv_cache_memory_bytes=None if v.kv_cache_gb is None else int(v.kv_cache_gb * 2 ** 30),
            disable_log_stats=True, **v.engine_args)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="gate-vllm")
        self._thread.start()
        # probe key → its residual reads, then all its features, once the worker pushes them
        self._waiting: dict[str, dict[bytes, asyncio.Future]] = {}
        authkey = os.urandom(32)
        listener = Listener(family="AF_UNIX", authkey=authkey)  # rank 0's worker connects in gate_install
        threading.Thread(target=self._read_pipe, args=(listener,), daemon=True, name="gate-features").start()
        self._llm: Any = self._call(self._started(AsyncLLM, args))
        install = (self.features.model_dump(), listener.address, authkey)
        self._weights = self._call(self._llm.collective_rpc("gate_install", args=install))[0]
        self.context_window = self._llm.model_config.max_model_len

    @staticmethod
    async def _started(cls: Any, args: Any) -> Any:
        """Build the async engine on its own loop (its output handler runs there)."""
        return cls.from_engine_args(args)

    def _read_pipe(self, listener: Listener) -> None:
        """Reader thread: each message is a probe's key, its kind (RESIDUAL, FULL) and its packed arrays
        (empty: they failed)."""
        with listener:
            pipe = listener.accept()
        with pipe, contextlib.suppress(EOFError, OSError):  # the worker exited
            while True:
                message = pipe.recv_bytes()
                key, kind, blob = message[:KEY_BYTES].decode(), message[KEY_BYTES:KEY_BYTES + 1], message[KEY_BYTES + 1:]
                self._loop.call_soon_threadsafe(self._deliver, key, kind, blob)

    def _deliver(self, key: str, kind: bytes, blob: bytes) -> None:
        """On the engine's loop: hand a probe's arrays to its waiting turn (gone if its caller left). The full
        features are the last message of a probe."""
        waiters = self._waiting.get(key) if kind == RESIDUAL else self._waiting.pop(key, None)
        waiter = None if waiters is None else waiters.get(kind)
        if waiter is not None and not waiter.done():
            waiter.set_result(blob)

    def forget(self, key: str) -> None:
        """A read's remaining features are not wanted: drop their waiter (from any thread)."""
        self._loop.call_soon_threadsafe(self._waiting.pop, key, None)

    def _call(self, work: Awaitable[T]) -> T:
        """Run a coroutine on the engine's loop and wait for its result in this thread."""
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    # ---- the interface --------------------------------------------------------------------------------

    def read(self, ids: list[int], probe: bool, lens_top: int = 0, span: Span | None = None,
             params: SamplingParams | None = None) -> ReadPrompt:
        if not probe:
            return _Read(self, ids, None, None)
        out: queue.SimpleQueue = queue.SimpleQueue()
        key, residual, full, task, inputs = self._call(self._probe(ids, lens_top, span or self.tail_span(len(ids)),
                                                                   params, out))
        lens: list[LensTop] = []

        def rest() -> Features:
            """The probe's other features (and lens top-k): waits for the worker's feature thread."""
            got, top = unpack(self._call(self._features_of(full, task)))
            lens.extend([as_lens_top(*top)] if top is not None else [])
            return got

        features = LazyFeatures(*unpack_residual(residual), rest)
        if lens_top:
            features.full()  # the probe view shows everything: wait for it now
        session = None if params is None else _Session(_Stream(self._loop, task, out), params, inputs)
        return _Read(self, ids, features, lens[0] if lens else None, session, key)

    def stream(self, ids: list[int], params: SamplingParams) -> Iterator[int]:
        """Generated ids of one request, as they come; closing the iterator aborts the request in vLLM."""
        out: queue.SimpleQueue = queue.SimpleQueue()
        return iter(_Stream(self._loop, self._call(self._start(ids, self.sampling(params), out)), out))

    def weight_bytes(self) -> int:
        return self._weights

    def close(self) -> None:
        if self._thread.is_alive():
            self._call(self._shutdown())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)

    # ---- on the engine's loop -------------------------------------------------------------------------

    async def _probe(self, ids: list[int], lens_top: int, span: Span, params: SamplingParams | None,
                     out: queue.SimpleQueue) -> tuple[str, bytes, asyncio.Future, asyncio.Task, asyncio.Future | None]:
        """The prompt's prefill with the gate's hooks, then its residual reads (and the future of the rest of its
        features, pushed later under the same key). Its own forward computes the last K positions and the latest
        user message (`span`), the rest may come from the prefix cache. Without `params` the probe is one greedy
        token (the probe view); with them it is a session's first input, one token sampled with them, and the
        session's next input is whatever the returned future is set to (None: none, the session ends)."""
        key = uuid.uuid4().hex
        compute = max(self.features.positions, len(ids) - span[0])
        extra = dict(extra_args={PROBE: key, LENS_TOP: lens_top, COMPUTE: compute, SPAN: list(span)},
                     skip_reading_prefix_cache=self._probe_skips_cache)
        loop = asyncio.get_running_loop()
        waiters = self._waiting[key] = {RESIDUAL: loop.create_future(), FULL: loop.create_future()}
        sampling = self.sampling(params or SamplingParams(max_tokens=1, temperature=0.0), max_tokens=1, **extra)
        inputs = None if params is None else loop.create_future()
        prompt = ids if inputs is None else self._session(ids, sampling, inputs)
        task = await self._start(prompt, sampling, out, f"probe-{key}")
        try:
            return key, await self._features_of(waiters[RESIDUAL], task), waiters[FULL], task, inputs
        except BaseException:
            task.cancel()
            self._waiting.pop(key, None)
            raise

    @staticmethod
    async def _session(ids: list[int], first: Any, inputs: asyncio.Future) -> AsyncIterator[Any]:
        """A streaming-input session's inputs: the prompt, then (token ids, sampling) once `inputs` says so.
        vLLM extends a session's token lists in place, so each input is a copy."""
        from vllm import TokensPrompt
        from vllm.engine.protocol import StreamingInput
        yield StreamingInput(TokensPrompt(prompt_token_ids=list(ids)), first)
        chunk = await inputs
        if chunk is not None:
            yield StreamingInput(TokensPrompt(prompt_token_ids=list(chunk[0])), chunk[1])

    @staticmethod
    async def _features_of(features: asyncio.Future, task: asyncio.Task) -> bytes:
        """A probe's packed arrays, once its worker pushes them; its request's error if that fails first."""
        done, _ = await asyncio.wait({features, task}, timeout=_FEATURES_WAIT_S, return_when=asyncio.FIRST_COMPLETED)
        if task in done and task.result() is not None:
            raise task.result()
        try:
            blob = await asyncio.wait_for(features, _FEATURES_WAIT_S)
        except TimeoutError:
            raise RuntimeError("vLLM ran the probe but the gate's hooks kept no reading of it") from None
        if not blob:
            raise RuntimeError("the gate's features failed in vLLM's worker (its log says why)")
        return blob

    def sampling(self, params: SamplingParams, **extra) -> Any:
        """vLLM's sampling for a turn's reply: new token ids only, as they come (`extra`: vLLM's own fields,
        over these)."""
        from vllm import SamplingParams as VllmParams
        from vllm.sampling_params import RequestOutputKind
        return VllmParams(**{**dict(max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p,
                                    seed=params.seed, stop_token_ids=self.eos_ids, detokenize=False,
                                    output_kind=RequestOutputKind.DELTA), **extra})

    async def _start(self, prompt: list[int] | AsyncIterator[Any], sampling: Any, out: queue.SimpleQueue,
                     request_id: str | None = None) -> asyncio.Task:
        """Start one request on this loop (token ids, or a session's inputs, whose first input carries its
        sampling, also given here); its new token ids go to `out` as they come, then _END."""
        return asyncio.ensure_future(self._generate(prompt, sampling, out, request_id or f"turn-{uuid.uuid4().hex}"))

    async def _generate(self, prompt: list[int] | AsyncIterator[Any], sampling: Any, out: queue.SimpleQueue,
                        request_id: str) -> BaseException | None:
        """One request's new token ids to `out`, then _END; an error goes there too (the turn's thread raises
        it) and is returned (a probe waiting for its features raises it at once)."""
        from vllm import TokensPrompt
        if isinstance(prompt, list):
            prompt = TokensPrompt(prompt_token_ids=prompt)
        try:
            async for chunk in self._llm.generate(prompt, sampling, request_id=request_id):
                out.put(list(chunk.outputs[0].token_ids))
        except Exception as exc:
            out.put(exc)
            return exc
        finally:
            out.put(_END)
        return None

    async def _shutdown(self) -> None:
        self._llm.shutdown()
        self._llm = None  # its __del__ would shut down again, at interpreter exit, noisily

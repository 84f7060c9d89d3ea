"""Serving one blocking Gate to many async clients: first come, first served, and a turn can be called off.

The Gate blocks while it computes, so each turn gets its own worker thread and the event loop stays free.
A request is prepared (validated, templated, tokenised) in a worker thread before it queues, so a huge prompt
delays nobody and a bad one fails without ever queueing. The engine serves `max_turns` turns at once (the
transformers engine one, the vLLM engine many); the rest wait, admitted in arrival order (asyncio.Semaphore
wakes waiters FIFO); a client that leaves while queued simply leaves the queue. A slot is released by the
worker thread itself once the Gate's generator is closed, so the engine is free before the next turn starts,
whatever the client did.
"""
from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, AsyncIterator, Literal

import anyio

from gate.turns import TurnEvent, TurnOverrides, TurnResult

if TYPE_CHECKING:
    from gate.pipeline import Gate, _Turn


@dataclass
class RunnerStats:
    """Counters shown by /health: what is running and waiting, how turns ended, and the error responses,
    the client's fault (4xx) apart from the server's (5xx)."""
    running: int = 0
    waiting: int = 0
    served: int = 0
    cancelled: int = 0
    client_errors: int = 0
    server_errors: int = 0

    def count(self, status: int) -> None:
        """One response's status; 499 (the client left) is already counted as a cancelled turn."""
        if status >= 500:
            self.server_errors += 1
        elif 400 <= status < 500 and status != 499:
            self.client_errors += 1


class Turn:
    """One turn in flight: events come out of `events()`; `cancel()` stops generation at the next token."""

    def __init__(self, runner: "TurnRunner", prepared: "_Turn"):
        self._runner, self._loop = runner, asyncio.get_running_loop()
        self._queue: asyncio.Queue[TurnEvent | BaseException] = asyncio.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(prepared,), daemon=True, name="gate-turn")
        self._thread.start()

    def _work(self, prepared: "_Turn") -> None:
        """Worker thread: pump the Gate's stream into the queue until it ends or the turn is cancelled."""
        outcome, stream = "served", None
        try:
            stream = self._runner.gate.run(prepared)
            for event in stream:
                self._emit(event)
                if self._stop.is_set() and not isinstance(event, TurnResult):
                    outcome = "cancelled"
                    break
        except Exception as exc:  # handed to the consumer, which turns it into an error response
            outcome = "failed"
            self._emit(exc)
        finally:
            if stream is not None:
                stream.close()  # the Gate stops generating and frees the engine
            self._loop.call_soon_threadsafe(self._runner._release, outcome)

    def _emit(self, item: TurnEvent | BaseException) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def cancel(self) -> None:
        self._stop.set()

    async def events(self) -> AsyncIterator[TurnEvent]:
        """The Gate's events in order, ending with the TurnResult; an error in the Gate is raised here."""
        while True:
            item = await self._queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if isinstance(item, TurnResult):
                return

    async def result(self) -> TurnResult:
        """The whole turn: its last event."""
        async for event in self.events():
            pass
        return event


class TurnRunner:
    """The single queue in front of the Gate."""

    def __init__(self, gate: Gate):
        self.gate = gate
        self.stats = RunnerStats()
        self._slot = asyncio.Semaphore(gate.engine.max_turns)

    async def start(self, messages: list[dict], overrides: TurnOverrides) -> Turn:
        """Prepare the turn in a worker thread (a TurnError raises here), wait for its slot (FIFO), then start
        it. Cancelling the wait leaves the queue."""
        prepared = await anyio.to_thread.run_sync(self.gate.prepare, messages, overrides, abandon_on_cancel=True)
        self.stats.waiting += 1
        try:
            await self._slot.acquire()
        finally:
            self.stats.waiting -= 1
        self.stats.running += 1
        try:
            return Turn(self, prepared)
        except BaseException:
            self._release("failed")
            raise

    def _release(self, outcome: Literal["served", "failed", "cancelled"]) -> None:
        """Free the slot; a failed turn is counted by the error response it becomes."""
        self.stats.running -= 1
        if outcome != "failed":
            setattr(self.stats, outcome, getattr(self.stats, outcome) + 1)
        self._slot.release()

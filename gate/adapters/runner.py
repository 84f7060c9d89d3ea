"""Serving one blocking Gate to many async clients: first come, first served, and a turn can be called off.

The Gate blocks while it computes, so each turn gets its own worker thread and the event loop stays free.
The engine serves `max_turns` turns at once (the transformers engine one, the vLLM engine many); the rest
wait, admitted in arrival order (asyncio.Semaphore wakes waiters FIFO); a client that leaves while queued
simply leaves the queue. A slot is released by the worker thread itself once the Gate's generator is
closed, so the engine is free before the next turn starts, whatever the client did.
"""
from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, AsyncIterator, Literal

from gate.turns import TurnEvent, TurnOverrides, TurnResult

if TYPE_CHECKING:
    from gate.pipeline import Gate


@dataclass
class RunnerStats:
    """Counters shown by /health: what is running and waiting, and how finished turns ended."""
    running: int = 0
    waiting: int = 0
    served: int = 0
    failed: int = 0
    cancelled: int = 0


class Turn:
    """One turn in flight: events come out of `events()`; `cancel()` stops generation at the next token."""

    def __init__(self, runner: "TurnRunner", messages: list[dict], overrides: TurnOverrides):
        self._runner, self._loop = runner, asyncio.get_running_loop()
        self._queue: asyncio.Queue[TurnEvent | BaseException] = asyncio.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(messages, overrides), daemon=True,
                                        name="gate-turn")
        self._thread.start()

    def _work(self, messages: list[dict], overrides: TurnOverrides) -> None:
        """Worker thread: pump the Gate's stream into the queue until it ends or the turn is cancelled."""
        outcome, stream = "served", None
        try:
            stream = self._runner.gate.stream(messages, overrides)
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
        """Wait for this request's turn (FIFO), then start it. Cancelling the wait leaves the queue."""
        self.stats.waiting += 1
        try:
            await self._slot.acquire()
        finally:
            self.stats.waiting -= 1
        self.stats.running += 1
        try:
            return Turn(self, messages, overrides)
        except BaseException:
            self._release("failed")
            raise

    def _release(self, outcome: Literal["served", "failed", "cancelled"]) -> None:
        self.stats.running -= 1
        setattr(self.stats, outcome, getattr(self.stats, outcome) + 1)
        self._slot.release()

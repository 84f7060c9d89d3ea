"""Generated token ids → text pieces on two channels (reasoning, content), decoded as they arrive.

Decoding is incremental without splitting multi-byte characters; thought markers are matched as
token ids (they are special tokens); stop strings end the answer and never show in it.
"""
from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from gate.engine.chat import ThinkingFormat
from gate.turns import Channel, Delta


class IncrementalDecoder:
    """Text added by each new token, decoded against a short window of previous tokens.

    Decoding a window (not single tokens) keeps the spaces that tokenizers attach by context, and a
    piece ending in U+FFFD (an incomplete UTF-8 sequence) is held until its bytes complete.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        self.tokenizer, self.ids, self.prefix, self.read = tokenizer, [], 0, 0

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        before, after = self._decode(self.ids[self.prefix:self.read]), self._decode(self.ids[self.prefix:])
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return ""
        self.prefix, self.read = self.read, len(self.ids)
        return after[len(before):]

    def flush(self) -> str:
        before, after = self._decode(self.ids[self.prefix:self.read]), self._decode(self.ids[self.prefix:])
        self.prefix = self.read = len(self.ids)
        return after[len(before):]


class _Segment:
    """One stretch of one channel: drops a leading label or whitespace, and holds back a possible stop string."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, drop: str = "", lstrip: bool = False,
                 stop: tuple[str, ...] = ()):
        self.decoder = IncrementalDecoder(tokenizer)
        self.drop, self.lstrip, self.stop = drop, lstrip, tuple(s for s in stop if s)
        self.pending, self.started, self.stopped = "", False, False
        self.after_lead = False  # the model's first words follow a gate-written opening, after one space

    def lead(self, text: str) -> str:
        """Start the segment with text the model did not write; stop strings apply to it as to the rest."""
        self.pending, self.started, self.after_lead = text, True, True
        return self._release(final=False)

    def feed(self, token_id: int) -> str:
        self._add(self.decoder.push(token_id))
        return self._release(final=False)

    def end(self) -> str:
        self._add(self.decoder.flush())
        return self._release(final=True)

    def _add(self, piece: str) -> None:
        if self.after_lead:
            piece = piece.lstrip()
            if not piece:
                return
            piece, self.after_lead = " " + piece, False
        self.pending += piece

    def _release(self, final: bool) -> str:
        if self.stopped:
            return ""
        if not self.started:
            if self.drop and self.drop.startswith(self.pending) and not final:
                return ""                                   # could still become the label: wait
            if self.drop and self.pending.startswith(self.drop):
                self.pending = self.pending[len(self.drop):]
            if self.lstrip:
                self.pending = self.pending.lstrip()
                if not self.pending:
                    return ""
            self.started = True
        hits = [i for i in (self.pending.find(s) for s in self.stop) if i >= 0]
        if hits:
            out, self.pending, self.stopped = self.pending[:min(hits)], "", True
            return out
        keep = 0 if final else max((len(s) for s in self.stop), default=1) - 1
        cut = max(0, len(self.pending) - keep)
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out


class ReplySplitter:
    """Feeds generated ids and returns Deltas; `text` holds what each channel showed so far."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, fmt: ThinkingFormat, in_thought: bool,
                 stop: list[str]):
        self.tokenizer, self.fmt, self.stop = tokenizer, fmt, tuple(stop)
        ids = tokenizer.convert_tokens_to_ids([fmt.open, fmt.close]) if fmt.has_channel else [None, None]
        self.open_id, self.close_id = ids
        self.text: dict[Channel, str] = {"reasoning": "", "content": ""}
        self.channel: Channel = "reasoning" if in_thought else "content"
        self.segment = self._segment(drop="")

    @property
    def stopped(self) -> bool:
        return self.segment.stopped

    def _segment(self, drop: str) -> _Segment:
        if self.channel == "content":
            return _Segment(self.tokenizer, lstrip=True, stop=self.stop)
        return _Segment(self.tokenizer, drop=drop)

    def _emit(self, text: str) -> list[Delta]:
        if not text:
            return []
        self.text[self.channel] += text
        return [Delta(self.channel, text)]

    def _switch(self, channel: Channel) -> list[Delta]:
        out = self._emit(self.segment.end())
        self.channel = channel
        self.segment = self._segment(drop=self.fmt.label)  # a thought the model opens starts with its label
        return out

    def lead(self, text: str) -> list[Delta]:
        """Text the gate writes before the model's answer (policy.openings): shown at once (but for what a stop
        string could still claim), then a space before the model's first words. The model never reads it, so its
        answer is the one it would give anyway."""
        return self._emit(self.segment.lead(text)) if text else []

    def push(self, token_id: int) -> list[Delta]:
        if token_id == self.open_id:
            return self._switch("reasoning")
        if token_id == self.close_id:
            return self._switch("content")
        return self._emit(self.segment.feed(token_id))

    def finish(self) -> list[Delta]:
        return self._emit(self.segment.end())

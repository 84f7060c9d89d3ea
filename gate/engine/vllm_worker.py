"""Inside vLLM's worker process: the gate's hooks read a probe's last prompt positions during vLLM's own
prefill, and the worker turns them into the same features as the transformers engine.

Installed as vLLM's `worker_extension_cls` and driven through `collective_rpc`: `gate_install` registers
forward hooks on every decoder layer (its output `(h, residual)` sums to the residual stream), on the
module before the MLP (its output's residual part is the stream just before the MLP) and on the MLP write,
and wraps the model runner's forward. Before each forward the wrapper finds, from the runner's input batch
(request ids, query start locations, computed-token counts), the flattened rows that hold the last K
prompt positions of each probe request (marked in its SamplingParams.extra_args); the hooks copy only
those rows. A probe whose K positions are all read (a chunked prefill may take several steps) gets its
features from gate.engine.features — the same code, on the same modules — off the forward's critical path:
a feature thread computes them (on the CPU cores vLLM left to its front end, where there are any) while the
engine runs its next steps, one probe at a time. Its logit lens, most of the work, starts during the forward
that computes the probe's last position: each group of layers goes to the feature thread as soon as the
forward has passed it, so only the last group's lens is left when the forward ends (what a turn waits for when
its residual reads, sent first, do not settle it). The thread pushes each probe's features as small float16
arrays packed in bytes through a pipe the main process reads (vllm_engine.py), without an RPC that would wait
behind a busy engine step. The residual reads go first, from the step itself, as soon as a probe's last position
is read: the heads that read only the residual stream (the sidecar, the applicability head's early read) decide
on them without waiting for the lens. Only rank 0 computes (tensor parallel: the residual stream and the MLP
write are whole on every rank; the vocabulary-sharded unembedding is gathered).
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gate.config import FeatureSettings
from gate.engine.arch import FAMILIES, ArchMap, UnsupportedArchitecture, check_supported
from gate.engine.capture import Activations, first_tensor
from gate.engine.features import Features, LensTrajectory, compute_features, hidden_layer_indices, residual_features
from gate.engine.lens import top_tokens

log = logging.getLogger(__name__)

PROBE = "gate_probe"        # SamplingParams.extra_args: the key a probe's features are kept under
LENS_TOP = "gate_lens_top"  # ... how many lens tokens per layer to report (the probe view), 0: none
COMPUTE = "gate_compute"    # ... and how many last prompt positions its own forward must compute (K or more)
SPAN = "gate_span"          # ... and [start, end): its latest user message's tokens, averaged at the message layers
SIGNALS = ("resid", "resid_mid", "write")
# Families whose vLLM decoder layers have the layout read here (Gemma 4's PLE and layer scalar are not read).
VLLM_FAMILIES = {name for name in FAMILIES if not name.startswith("gemma4")}
KEY_BYTES = 32  # a probe's key (uuid4 hex) heads each message on the pipe, then its kind; an empty rest: it failed
RESIDUAL, FULL = b"r", b"f"  # the kinds: a probe's residual reads (first), then all its features
# The lens of a probe's last position goes to the feature thread in this many groups of layers during the forward.
# Each group reads the whole unembedding once (56 MB on the default model), so more groups cost memory traffic;
# with 4 the last group, all that is left when the forward ends, is a quarter of the lens.
LENS_GROUPS = 4


class _Unembed(nn.Module):
    """The unembedding as a plain product (vLLM's head module only computes logits through its sampler)."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)


def _unembedding(model: nn.Module, vocab_size: int) -> torch.Tensor:
    """The whole unembedding matrix [vocab, d]: gathered across tensor-parallel ranks, padding cut off."""
    from vllm.distributed import get_tensor_model_parallel_world_size, tensor_model_parallel_all_gather
    head = getattr(model, "lm_head", None) or model.model.embed_tokens  # Gemma ties it to the embedding
    weight = head.weight
    if get_tensor_model_parallel_world_size() > 1:
        weight = tensor_model_parallel_all_gather(weight.contiguous(), dim=0)
    return weight[:vocab_size]


def vllm_family(hf_config: Any) -> str:
    """The model's family if the vLLM engine reads it; else UnsupportedArchitecture naming what it reads."""
    family = check_supported(hf_config)
    if family not in VLLM_FAMILIES:
        raise UnsupportedArchitecture(f"the vLLM engine does not read {family!r} yet; use model.engine: "
                                      f"transformers (vLLM engine: {', '.join(sorted(VLLM_FAMILIES))})")
    return family


def vllm_arch(model: nn.Module, hf_config: Any) -> ArchMap:
    """The gate's architecture map on vLLM's modules (same family table as the transformers engine)."""
    family = vllm_family(hf_config)
    text = hf_config.get_text_config()
    decoder = model.model
    layers = decoder.layers[: text.num_hidden_layers]
    mid_name, write_name = FAMILIES[family]
    return ArchMap(family=family, layers=layers, final_norm=decoder.norm,
                   lm_head=_Unembed(_unembedding(model, text.vocab_size)),
                   softcap=getattr(text, "final_logit_softcapping", None),
                   resid_mid=[getattr(layer, mid_name) for layer in layers],
                   write=[getattr(layer, write_name) for layer in layers],
                   num_layers=text.num_hidden_layers, hidden_size=text.hidden_size, vocab_size=text.vocab_size)


def _npz(**arrays: np.ndarray) -> bytes:
    """Small arrays as bytes, no pickle."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _arrays(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def pack(features: Features, lens: tuple[torch.Tensor, torch.Tensor] | None) -> bytes:
    """One probe's features (and lens top-k) as bytes."""
    arrays = {"layer": features.layer, "globals": features.globals, "hidden": features.hidden,
              "top_tokens": features.top_tokens, "message": features.message}
    if lens is not None:
        arrays |= {"lens_ids": lens[0].cpu().numpy(), "lens_p": lens[1].float().cpu().numpy()}
    return _npz(**arrays)


def unpack(blob: bytes) -> tuple[Features, tuple[np.ndarray, np.ndarray] | None]:
    """The inverse of `pack`, in the main process."""
    z = _arrays(blob)
    features = Features(z["layer"], z["globals"], z["hidden"], z["top_tokens"], z["message"])
    return features, ((z["lens_ids"], z["lens_p"]) if "lens_ids" in z else None)


def pack_residual(hidden: np.ndarray, message: np.ndarray) -> bytes:
    """A probe's residual reads (`residual_features`) as bytes: sent before the rest of its features."""
    return _npz(hidden=hidden, message=message)


def unpack_residual(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    z = _arrays(blob)
    return z["hidden"], z["message"]


@dataclass
class _LastPositions:
    """The probes whose last prompt position this step computes: their rows among the step's probe rows, the
    lens trajectory the feature thread builds for them and how many layers of it are queued."""
    rows: torch.Tensor
    trajectory: LensTrajectory = field(default_factory=LensTrajectory)
    queued: int = 0


@dataclass
class _Reading:
    """A probe whose last `width` prompt positions are being read, possibly over several prefill chunks."""
    key: str
    length: int   # prompt tokens
    width: int    # positions kept: min(K, length)
    lens_top: int
    span: tuple[int, int]
    acts: dict[str, torch.Tensor] = field(default_factory=dict)  # signal → [L, width, d]
    filled: set[int] = field(default_factory=set)
    lens: tuple[LensTrajectory, int] | None = None  # its last position's lens (the step's trajectory, its row)
    message: torch.Tensor | None = None  # [M, d] float32: sum of the residual over the span's positions read
    counted: int = 0                     # ... and how many positions that is

    @property
    def first(self) -> int:
        return self.length - self.width


def _stream_rows(out: Any, rows: torch.Tensor) -> torch.Tensor:
    """A vLLM decoder layer returns (h, residual); the residual stream after the layer is their sum."""
    if isinstance(out, tuple) and len(out) > 1 and out[1] is not None:
        return out[0].index_select(0, rows) + out[1].index_select(0, rows)
    return first_tensor(out).index_select(0, rows)


def _mid_rows(out: Any, rows: torch.Tensor) -> torch.Tensor:
    """A fused add + norm returns (normed, residual): the residual is the stream entering the MLP."""
    return (out[1] if isinstance(out, tuple) else out).index_select(0, rows)


def _write_rows(out: Any, rows: torch.Tensor) -> torch.Tensor:
    return first_tensor(out).index_select(0, rows)


class GateWorkerExtension:
    """Mixed into vLLM's worker class; methods are called by name through `collective_rpc`."""

    def gate_install(self, features: dict, address: str, authkey: bytes) -> int:
        """Register the hooks, wrap the runner's forward and (rank 0) connect the feature pipe to the main
        process's listener at `address`; returns the weights' size in bytes."""
        from multiprocessing.connection import Client
        runner = self.model_runner
        model = runner.get_model()
        self._gate_settings = FeatureSettings(**features)
        self._gate_arch = vllm_arch(model, runner.model_config.hf_config)
        self._gate_rank0 = getattr(self, "rank", 0) == 0
        self._gate_rows: torch.Tensor | None = None
        self._gate_seen: dict[str, list[torch.Tensor]] = {s: [] for s in SIGNALS}
        self._gate_span_rows: torch.Tensor | None = None  # this step's rows inside a probe's message span
        self._gate_span_seen: list[torch.Tensor] = []       # ... their residual at each message layer
        self._gate_open: dict[str, _Reading] = {}
        self._gate_last: _LastPositions | None = None  # this step's probes' last positions, for their lens
        if self._gate_rank0:
            self._gate_pipe = Client(address, family="AF_UNIX", authkey=authkey)
            self._gate_pipe_lock = threading.Lock()  # the step and the feature thread both send
            self._gate_queue: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
            threading.Thread(target=self._gate_features, daemon=True, name="gate-features").start()
        arch = self._gate_arch
        L = arch.num_layers
        self._gate_group_ends = {max(1, round(L * (g + 1) / LENS_GROUPS)) for g in range(LENS_GROUPS)}
        for i, (layer, mid, write) in enumerate(zip(arch.layers, arch.resid_mid, arch.write)):
            layer.register_forward_hook(self._gate_hook("resid", _stream_rows, i + 1))
            mid.register_forward_hook(self._gate_hook("resid_mid", _mid_rows))
            write.register_forward_hook(self._gate_hook("write", _write_rows))
        for i in hidden_layer_indices(arch.num_layers, self._gate_settings.message_depths):
            arch.layers[i].register_forward_hook(self._gate_span_hook)
        forward = runner._model_forward
        runner._model_forward = lambda *args, **kwargs: self._gate_forward(forward, *args, **kwargs)
        return sum(p.numel() * p.element_size() for p in model.parameters())

    # ---- inside the worker's step ---------------------------------------------------------------------

    def _gate_hook(self, signal: str, pick: Callable[[Any, torch.Tensor], torch.Tensor], depth: int = 0
                   ) -> Callable:
        """A forward hook copying this step's probe rows (a copy: vLLM's fused norms edit in place). A layer's
        output hook (`depth`: layers done) that ends a group hands that group's lens to the feature thread."""
        def hook(module: nn.Module, args: Any, out: Any) -> None:
            if self._gate_rows is not None:
                self._gate_seen[signal].append(pick(out, self._gate_rows))
                if depth in self._gate_group_ends and self._gate_last is not None:
                    self._gate_lens_group(depth)
        return hook

    def _gate_lens_group(self, depth: int) -> None:
        """Queue the lens of the layers since the last group, at this step's last prompt positions."""
        last = self._gate_last
        resid, write = (torch.stack(self._gate_seen[s][last.queued:depth], dim=1).index_select(0, last.rows)
                        for s in ("resid", "write"))  # [probes, layers, d]
        last.queued = depth
        self._gate_queue.put(lambda: last.trajectory.add(self._gate_arch, resid, write))

    def _gate_span_hook(self, module: nn.Module, args: Any, out: Any) -> None:
        """At a message layer: the residual of this step's rows inside probes' message spans."""
        if self._gate_span_rows is not None:
            self._gate_span_seen.append(_stream_rows(out, self._gate_span_rows))

    def _gate_plan(self) -> tuple[list[tuple[_Reading, int, int]], list[tuple[_Reading, int]]]:
        """(reading, flattened row, kept slot) for every probe position this step computes among the last K,
        and (reading, flattened row) for every one inside a probe's message span."""
        runner = self.model_runner
        batch = runner.input_batch
        n = batch.num_reqs
        starts = runner.query_start_loc.np[: n + 1]
        computed = batch.num_computed_tokens_cpu[:n]
        for req_id in [r for r in self._gate_open if r not in runner.requests]:
            del self._gate_open[req_id]  # aborted mid-prefill
        plan, spans = [], []
        for i, req_id in enumerate(batch.req_ids[:n]):
            reading = self._gate_open.get(req_id)
            length = int(batch.num_prompt_tokens[i])
            if reading is None:
                extra = getattr(runner.requests[req_id].sampling_params, "extra_args", None) or {}
                if PROBE not in extra or computed[i] >= length:
                    continue
                width = min(self._gate_settings.positions, length)
                reading = self._gate_open[req_id] = _Reading(extra[PROBE], length, width, int(extra.get(LENS_TOP, 0)),
                                                             tuple(extra[SPAN]))
            done = int(computed[i])
            stop = min(length, done + int(starts[i + 1] - starts[i]))
            for pos in range(max(reading.first, done), stop):
                plan.append((reading, int(starts[i]) + pos - done, pos - reading.first))
            spans += [(reading, int(starts[i]) + pos - done) for pos in range(max(reading.span[0], done),
                                                                            min(reading.span[1], stop))]
        return plan, spans

    def _gate_forward(self, forward: Callable, *args, **kwargs) -> Any:
        plan, spans = self._gate_plan() if self._gate_rank0 else ([], [])
        if not plan and not spans:
            return forward(*args, **kwargs)
        device = self.model_runner.device
        self._gate_rows = torch.tensor([row for _, row, _ in plan], dtype=torch.long, device=device) if plan else None
        self._gate_span_rows = torch.tensor([row for _, row in spans], dtype=torch.long, device=device) if spans else None
        last = [k for k, (reading, _, slot) in enumerate(plan) if slot == reading.width - 1]
        self._gate_last = _LastPositions(torch.tensor(last, dtype=torch.long, device=device)) if last else None
        try:
            out = forward(*args, **kwargs)
            seen = {s: torch.stack(v, dim=0) for s, v in self._gate_seen.items() if v}  # [L, rows, d]
            message = torch.stack(self._gate_span_seen, dim=0).float() if self._gate_span_seen else None  # [M, rows, d]
        finally:
            lens, self._gate_last = self._gate_last, None
            self._gate_rows = self._gate_span_rows = None
            self._gate_seen = {s: [] for s in SIGNALS}
            self._gate_span_seen = []
        if spans:  # each probe's share of the span rows, summed in one scatter
            slots: dict[int, int] = {}  # id(reading) → its slot (readings hold tensors: not hashable)
            index = torch.tensor([slots.setdefault(id(reading), len(slots)) for reading, _ in spans],
                                 device=message.device)
            owners = list({id(reading): reading for reading, _ in spans}.values())
            sums = message.new_zeros(len(owners), *message.shape[::2]).index_add_(0, index, message.transpose(0, 1))
            for reading, total, count in zip(owners, sums, torch.bincount(index, minlength=len(owners)).tolist()):
                reading.message = total if reading.message is None else reading.message + total
                reading.counted += count
        for row, k in enumerate(last):
            plan[k][0].lens = (lens.trajectory, row)
        for r, (reading, _, slot) in enumerate(plan):
            if not reading.acts:
                reading.acts = {s: x.new_zeros(x.shape[0], reading.width, x.shape[-1]) for s, x in seen.items()}
            for s, x in seen.items():
                reading.acts[s][:, slot] = x[:, r]
            reading.filled.add(slot)
        for req_id in [k for k, r in self._gate_open.items() if len(r.filled) == r.width]:
            reading = self._gate_open.pop(req_id)  # all read: its residual reads now, the rest after its lens
            self._gate_send(reading, RESIDUAL, self._gate_residual)
            self._gate_queue.put(lambda reading=reading: self._gate_send(reading, FULL, self._gate_finish))
        return out

    def _gate_features(self) -> None:
        """The feature thread: runs the queued work in order — groups of a probe's lens as its forward passes
        them, then each finished reading's features, pushed through the pipe.

        It runs on the cores vLLM did not bind its OpenMP threads to (reserved for its front end) when there
        are any, so the lens's [rows, vocab] product does not hold up the next forward on the bound cores.
        """
        spare = set(range(os.cpu_count() or 1)) - os.sched_getaffinity(0)
        if spare:
            with contextlib.suppress(OSError):  # cores outside this container's set: stay where vLLM put us
                os.sched_setaffinity(0, spare)  # this thread only (Linux: 0 is the calling thread)
        while True:
            work = self._gate_queue.get()
            try:
                with torch.inference_mode():
                    work()
            except Exception:  # a lens group: its probe's features fail when they find the trajectory short
                log.exception("the gate's lens failed")

    def _gate_send(self, reading: _Reading, kind: bytes, packed: Callable[[_Reading], bytes]) -> None:
        try:
            blob = packed(reading)
        except Exception:
            log.exception("the gate's features failed for probe %s", reading.key)
            blob = b""
        with self._gate_pipe_lock:
            self._gate_pipe.send_bytes(reading.key.encode() + kind + blob)

    def _gate_acts(self, r: _Reading) -> Activations:
        """One probe's readings as the features read them (a batch of one)."""
        resid = r.acts["resid"]
        message = (r.message / max(r.counted, 1) if r.message is not None else
                   resid.new_zeros(len(self._gate_settings.message_depths), resid.shape[-1], dtype=torch.float32))
        return Activations(**{s: x[None] for s, x in r.acts.items()},
                           attention_mask=torch.ones(1, r.length, dtype=torch.long, device=self.model_runner.device),
                           message=message[None].to(resid.dtype))

    def _gate_residual(self, r: _Reading) -> bytes:
        """One probe's residual reads, packed: no lens needed."""
        return pack_residual(*residual_features(self._gate_acts(r), self._gate_settings))

    @torch.inference_mode()
    def _gate_finish(self, r: _Reading) -> bytes:
        """One probe's features (and lens top-k, for the probe view), packed."""
        acts = self._gate_acts(r)
        trajectory, row = r.lens
        if trajectory.layers != self._gate_arch.num_layers:
            raise RuntimeError(f"the lens read {trajectory.layers} of {self._gate_arch.num_layers} layers")
        f, top = trajectory.result()
        lens = top_tokens(self._gate_arch, r.acts["resid"][:, -1], r.lens_top) if r.lens_top else None
        return pack(compute_features(self._gate_arch, acts, self._gate_settings, (f[row:row + 1], top[row:row + 1])), lens)

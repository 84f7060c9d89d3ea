"""Gradio view: probe a question, compare baseline and seeded answers, read the shipped evaluation.

The Gate serves one turn at a time (its lock); all model events here also share one Gradio queue
(`_MODEL_QUEUE`), so a waiting user sees a queue position instead of a worker blocked on the lock.
Errors reach the user as messages, never as tracebacks.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr
import psutil
import torch
from PIL import Image

from gate.adapters import figures
from gate.adapters.evaluation import ShippedEvaluation, load_band_sweep, load_evaluation
from gate.config import Settings
from gate.engine.features import band_layers
from gate.engine.loading import model_slug
from gate.models import known
from gate.sidecar import data_dir, sidecar_dir
from gate.turns import Delta, GateView, TurnError, TurnOverrides, TurnResult
from gate.normalize import matches

if TYPE_CHECKING:
    from gate.pipeline import Gate

log = logging.getLogger(__name__)
_MODEL_QUEUE = "model"


@contextlib.contextmanager
def _as_message():
    """Turn a failure into a gr.Error message: the request's own fault verbatim, anything else by type and text."""
    try:
        yield
    except gr.Error:
        raise
    except TurnError as exc:
        raise gr.Error(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - the UI must not die on one bad turn; the log keeps the trace
        log.exception("UI action failed")
        raise gr.Error(f"{type(exc).__name__}: {exc}") from None


def _user_errors(fn: Callable) -> Callable:
    """`fn` with its failures shown as messages; generator functions stay generators (Gradio streams them)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args, **kwargs):
            with _as_message():
                yield from fn(*args, **kwargs)
        return stream

    @functools.wraps(fn)
    def call(*args, **kwargs):
        with _as_message():
            return fn(*args, **kwargs)
    return call


def _messages(question: str) -> list[dict]:
    if not question or not question.strip():
        raise gr.Error("Type a question first.")
    return [{"role": "user", "content": question.strip()}]


# ---------------------------------------------------------------- probe

def _probe_outputs(settings: Settings, gate: Gate, question: str, low: float, high: float,
                   progress: gr.Progress = gr.Progress()) -> tuple:
    """One prompt-only forward: the gauge, the verdict, both signals and the forming table."""
    progress(0.2, desc="one prompt forward with the probe hooks")
    # Mode "seed" so the gate reads P(knows) even when the config serves with the gate off.
    report = gate.probe(_messages(question), TurnOverrides(mode="seed", bands=(low, high)))
    view, layer = report.gate, report.features.layer[0]
    band = band_layers(layer.shape[0], settings.features.recall_band)
    facts = [f"{report.prompt_tokens} prompt tokens", f"probe {view.probe_ms:.0f} ms"]
    return (
        figures.gauge(view.p_knows, view.bands, view.decision),
        figures.verdict_html(view.p_knows, view.decision, facts, view.note, view.p_factual, view.factual_threshold),
        figures.signal_a(layer, band),
        figures.signal_b(layer, band),
        figures.forming_rows(report.lens, band),
    )


def _probe_tab(settings: Settings, gate: Gate, question: gr.Textbox, low: gr.Slider, high: gr.Slider) -> None:
    button = gr.Button("Probe", variant="primary", elem_id="probe-button")
    with gr.Row():
        gauge = gr.Plot(label="P(knows)", elem_id="probe-gauge")
        with gr.Column():
            verdict = gr.HTML("Press <b>Probe</b>: one prompt forward, nothing generated.", elem_id="probe-verdict")
            forming = gr.Dataframe(headers=figures.FORMING_COLUMNS,
                                   label="What's forming: logit-lens top tokens at the final prompt position",
                                   interactive=False, elem_id="probe-forming")
    with gr.Row():
        sig_a = gr.Plot(label="Signal A", elem_id="probe-signal-a")
        sig_b = gr.Plot(label="Signal B", elem_id="probe-signal-b")
    run = _user_errors(functools.partial(_probe_outputs, settings, gate))
    for trigger in (button.click, question.submit):
        trigger(run, [question, low, high], [gauge, verdict, sig_a, sig_b, forming], concurrency_id=_MODEL_QUEUE)


# ---------------------------------------------------------------- head to head

def _golds(text: str) -> list[str]:
    return [g.strip() for g in (text or "").split("|") if g.strip()]


def _mark(result: TurnResult, golds: list[str]) -> str:
    """Correct / incorrect against the golds; an abstention is neither."""
    if not golds:
        return ""
    if result.finish_reason == "abstain":
        return "<span style='color:#888'>— abstained</span>"
    if matches(result.content, golds):
        return f"<b style='color:{figures.DECISION_COLORS['answer']}'>✓ correct</b>"
    return f"<b style='color:{figures.DECISION_COLORS['abstain']}'>✗ incorrect</b>"


def _stats(result: TurnResult) -> str:
    return (f"{result.completion_tokens} tokens · finish: {result.finish_reason} · "
            f"first token {result.first_token_ms:.0f} ms · total {result.total_ms:.0f} ms")


_H2H_OUTPUTS = ("base_thought", "base_answer", "base_mark", "base_stats", "verdict", "seed",
                "seeded_thought", "seeded_answer", "seeded_mark", "seeded_stats")


def _head_to_head(gate: Gate, question: str, low: float, high: float, budget: int, mode: str,
                  gold_text: str) -> Iterator[tuple[str, ...]]:
    """Baseline (`off`), then seeded, answers to the same question with the same budget, streamed as written.

    Yields all `_H2H_OUTPUTS` each time. Each stream is closed even if the user leaves mid-answer:
    an open stream would keep the Gate's lock.
    """
    messages, golds = _messages(question), _golds(gold_text)
    state = dict.fromkeys(_H2H_OUTPUTS, "")
    sides = (("base", TurnOverrides(mode="off", max_tokens=int(budget))),
             ("seeded", TurnOverrides(mode=mode, bands=(low, high), max_tokens=int(budget))))
    for side, overrides in sides:
        state[f"{side}_stats"] = "generating…"
        with contextlib.closing(gate.stream(messages, overrides)) as events:
            for event in events:
                if isinstance(event, GateView) and side == "seeded":
                    state["verdict"] = figures.verdict_html(event.p_knows, event.decision, [f"mode {event.mode}"],
                                                            event.note, event.p_factual, event.factual_threshold)
                    why = ("not a knowledge question, passed" if event.decision == "pass" else
                           "this model answers it plainly, model.prefill_seeds" if event.p_knows is not None else
                           event.note or "no P(knows)")
                    state["seed"] = event.seed_text or f"(no seed: {why})"
                    if event.opening:  # said to the user by the gate, before the model's reply
                        state["seed"] += f'\n(the gate opens the answer with "{event.opening}")'
                elif isinstance(event, Delta):
                    state[f"{side}_{'thought' if event.channel == 'reasoning' else 'answer'}"] += event.text
                elif isinstance(event, TurnResult):
                    state[f"{side}_thought"], state[f"{side}_answer"] = event.reasoning, event.content
                    state[f"{side}_mark"], state[f"{side}_stats"] = _mark(event, golds), _stats(event)
                yield tuple(state.values())


def _side(name: str, thinks: bool) -> list[gr.components.Component]:
    """Thought, answer, correctness mark and timings of one side; no thought box for a model that cannot think."""
    return [gr.Textbox(label="Thought", lines=3, visible=thinks, elem_id=f"h2h-{name}-thought"),
            gr.Textbox(label="Answer", lines=6, elem_id=f"h2h-{name}-answer"),
            gr.HTML(elem_id=f"h2h-{name}-mark"),
            gr.Markdown(elem_id=f"h2h-{name}-stats")]


def _head_to_head_tab(settings: Settings, gate: Gate, question: gr.Textbox, low: gr.Slider, high: gr.Slider) -> None:
    gen, thinks = settings.generation, gate.engine.thinking.has_channel
    with gr.Row():
        budget = gr.Slider(1, 2 * gen.max_tokens, value=gen.max_tokens, step=1,
                           label="token budget (both sides)", elem_id="h2h-budget")
        mode = gr.Radio(["seed", "gate"], value="gate" if settings.policy.mode == "gate" else "seed",
                        label="seeded side: mode", info="gate: an abstain decision returns the abstention text",
                        elem_id="h2h-mode")
        golds = gr.Textbox(label="gold answers (optional, |-separated)", elem_id="h2h-golds")
    button = gr.Button("Run head to head", variant="primary", elem_id="h2h-button")
    with gr.Row():
        with gr.Column():
            gr.Markdown("### Baseline (mode off)")
            base = _side("base", thinks)
        with gr.Column():
            gr.Markdown("### Seeded")
            verdict = gr.HTML(elem_id="h2h-verdict")
            where = "opened in the thinking channel" if thinks else "a hidden prefill of the reply, not shown to users"
            seed = gr.Textbox(label=f"Seed text ({where})", lines=2, elem_id="h2h-seed-text")
            seeded = _side("seeded", thinks)
    run = _user_errors(functools.partial(_head_to_head, gate))
    button.click(run, [question, low, high, budget, mode, golds], [*base, verdict, seed, *seeded],
                 concurrency_id=_MODEL_QUEUE)


# ---------------------------------------------------------------- evaluation

def _evaluation_view(settings: Settings, folder: Path) -> tuple:
    """Status text, metrics table and figures for the loaded model's shipped evaluation."""
    found = load_evaluation(folder)
    return _evaluation_text(settings, found), _table(found), _images(found.figures)


def _images(paths: list[Path]) -> list[tuple[Image.Image, str]]:
    """Figures as images (served from memory, so no file-path allow-list is needed); unreadable ones skipped."""
    images = []
    for path in paths:
        try:
            images.append((Image.open(path), path.stem))
        except OSError as exc:
            log.warning("skipping figure %s: %s", path, exc)
    return images


def _evaluation_text(settings: Settings, found: ShippedEvaluation) -> str:
    if found.empty:
        return (f"**No evaluation shipped yet for `{settings.model.id}`** (looked in `{found.directory}`). "
                "Train and evaluate a sidecar for this model to fill this tab.")
    notes = [f"Shipped evaluation from `{found.directory}`."]
    offline = known(settings.model.id)
    if offline is not None and settings.model.id == offline.name:
        notes.append(f"This is {offline.title}: its weights went through 4-bit quantisation before conversion, "
                     "so these metrics are for that copy, not the original fp16 model.")
    notes += [f"⚠ {problem}" for problem in found.problems]
    return "\n\n".join(notes + [f"#### {name}\n\n{text}" for name, text in found.summaries.items()])


def _table(found: ShippedEvaluation) -> dict:
    return {"headers": found.columns or ["metrics.json"], "data": found.rows or [["(none shipped)"]]}


def _bands_view(folder: Path, low: float, high: float) -> tuple:
    """The band-choosing figure and outcome table for the sliders' bands; a note when nothing is shipped."""
    sweep = load_band_sweep(folder)
    if sweep is None:
        return None, (f"No band sweep shipped in `{folder}` (`python -m training.evaluate` writes "
                      "bands.json with the metrics).")
    return figures.band_sweep(sweep, low, high), figures.band_outcomes_markdown(sweep, low, high)


def _evaluation_tab(settings: Settings, folder: Path, low: gr.Slider, high: gr.Slider) -> None:
    gr.Markdown("#### Choosing bands\nHeld-out questions of this model: move the band sliders at the top and read "
                "how many correct answers are kept and how many wrong ones removed.")
    plot, table = _bands_view(folder, low.value, high.value)
    bands_plot = gr.Plot(value=plot, label="bands", elem_id="eval-bands-plot")
    bands_table = gr.Markdown(table, elem_id="eval-bands-table")
    redraw = _user_errors(functools.partial(_bands_view, folder))
    for slider in (low, high):
        slider.change(redraw, [low, high], [bands_plot, bands_table])
    text, table, gallery = _evaluation_view(settings, folder)
    status = gr.Markdown(text, elem_id="eval-text")
    metrics = gr.Dataframe(value=table, label="every number in the shipped JSON files", interactive=False,
                           show_search="search", elem_id="eval-metrics")
    images = gr.Gallery(value=gallery, label="figures", columns=1, height="auto", object_fit="contain",
                        preview=False, elem_id="eval-figures")
    reload = gr.Button("Reload shipped metrics", elem_id="eval-reload")
    reload.click(_user_errors(functools.partial(_evaluation_view, settings, folder)), None, [status, metrics, images])
    reload.click(redraw, [low, high], [bands_plot, bands_table])


# ---------------------------------------------------------------- info

def _info(settings: Settings, gate: Gate) -> str:
    """What is loaded and where, with current memory, as a Markdown table."""
    engine, arch = gate.engine, gate.engine.shape
    band = band_layers(arch.num_layers, settings.features.recall_band)
    bands = settings.policy.bands
    ckpt = sidecar_dir(settings, engine.model_id)
    rows = [
        ("model", f"`{settings.model.id}` ({arch.family}) on the {settings.model.engine} engine"),
        ("device / dtype", f"{engine.device} / {str(engine.dtype).removeprefix('torch.')}"),
        ("layers · hidden · vocab", f"{arch.num_layers} · {arch.hidden_size} · {arch.vocab_size}"),
        ("recall band", f"{settings.features.recall_band} of depth → layers {band.start + 1}–{band.stop}"),
        ("policy", f"mode `{settings.policy.mode}`, bands abstain < {bands.low} ≤ hedge < {bands.high} ≤ answer"),
        ("thinking channel", f"`{engine.thinking.name}`"),
        ("sidecar checkpoint", f"`{ckpt}` ({'loaded' if gate.sidecar is not None else 'none found: no P(knows)'})"),
        ("memory", _memory(engine.device, engine.weight_bytes())),
    ]
    return "| loaded | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def _memory(device: torch.device, params_bytes: int) -> str:
    rss = psutil.Process().memory_info().rss
    parts = [f"weights {params_bytes / 2**20:.0f} MiB", f"process RSS {rss / 2**20:.0f} MiB"]
    if device.type == "cuda":
        parts.append(f"CUDA allocated {torch.cuda.memory_allocated(device) / 2**20:.0f} MiB")
    return " · ".join(parts)


def _info_tab(settings: Settings, gate: Gate) -> None:
    facts = gr.Markdown(_info(settings, gate), elem_id="info-facts")
    gr.Button("Refresh").click(_user_errors(functools.partial(_info, settings, gate)), None, facts)
    gr.JSON(settings.model_dump(mode="json"), label="resolved config", elem_id="info-config")


# ---------------------------------------------------------------- the page

def build_ui(settings: Settings, gate: Gate) -> gr.Blocks:
    """The whole view for one loaded Gate; `gate serve` mounts it at /ui, `gate ui` launches it alone."""
    bands = settings.policy.bands
    with gr.Blocks(title="knowledge-gate", analytics_enabled=False) as demo:
        gr.Markdown(f"## knowledge-gate · `{settings.model.id}`\nDoes the model know the answer before it speaks?")
        with gr.Row():
            question = gr.Textbox(label="question", placeholder="What is the capital of France?", scale=4,
                                  elem_id="question")
            low = gr.Slider(0, 1, value=bands.low, step=0.01, label="abstain below", elem_id="band-low")
            high = gr.Slider(0, 1, value=bands.high, step=0.01, label="answer from", elem_id="band-high")
        with gr.Tabs():
            with gr.Tab("Probe", elem_id="tab-probe"):
                _probe_tab(settings, gate, question, low, high)
            with gr.Tab("Head to head", elem_id="tab-h2h"):
                _head_to_head_tab(settings, gate, question, low, high)
            with gr.Tab("Evaluation", elem_id="tab-eval"):
                _evaluation_tab(settings, data_dir(model_slug(settings.model.id)), low, high)  # training ships it there
            with gr.Tab("Info", elem_id="tab-info"):
                _info_tab(settings, gate)
    return demo


def launch(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """`gate ui`: load the Gate once and serve the view alone (offline: no analytics, no share link)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from gate.pipeline import Gate  # late: loading the model is the slow part, do it only when serving
    demo = build_ui(settings, Gate(settings))
    demo.queue().launch(server_name=host or settings.server.host, server_port=port or settings.server.port,
                        share=False, show_error=True)

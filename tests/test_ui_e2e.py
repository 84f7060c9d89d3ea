"""The view end to end: real Gate on the default model, served on loopback, driven in headless Chromium.

Checks what a user sees (P(knows), verdict, both answers, correctness marks, shipped metrics), and that the
page fetches nothing beyond loopback: it must work on a machine without internet.
"""
from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from gate.adapters.evaluation import load_evaluation
from gate.engine.loading import model_slug
from gate.normalize import matches
from training.store import data_dir

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (scripts/setup.sh --browser)")

# Flags for a closed network: without the background ones Chromium keeps dialling Google services.
_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
_QUESTION = "What is the capital of France?"
_VERDICT = re.compile(r"P\(knows\) = ([\d.]+)% → (answer|hedge|abstain)")


@pytest.fixture(scope="module")
def gate(settings, engine):
    from gate.pipeline import Gate
    gate = Gate(settings, engine=engine)
    assert gate.sidecar is not None, "the default model's sidecar checkpoint ships in ckpts/; it was not found"
    return gate


@pytest.fixture(scope="module")
def url(settings, gate, monkeypatch_module):
    from gate.adapters.ui import build_ui
    monkeypatch_module.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = build_ui(settings, gate)  # the Evaluation tab reads what training shipped for the default model
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def external() -> list[str]:
    """Every request the page makes that leaves loopback."""
    return []


@pytest.fixture(scope="module")
def page(url, external):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("request", lambda r: None if r.url.startswith((url, "data:", "blob:")) else external.append(r.url))
        page.goto(url)
        yield page
        browser.close()


def _wait_done(page, condition: str) -> None:
    """Wait for `condition` and for every Gradio status tracker (progress overlay) to be hidden again."""
    page.wait_for_function(f"({condition}) && !document.querySelector('.wrap.default:not(.hide)')", timeout=90_000)
    page.wait_for_timeout(400)  # the outputs fade back in from their pending opacity


def test_probe_then_head_to_head(page, external, gate, settings, tmp_path):
    from gate.adapters.figures import forming_depths
    from gate.engine.features import band_layers
    from gate.turns import TurnOverrides

    page.locator("#probe-button").click()  # no question yet: a message, not a traceback
    page.get_by_text("Type a question first.").first.wait_for(timeout=10_000)

    page.locator("#question textarea").fill(_QUESTION)
    page.locator("#probe-button").click()
    _wait_done(page, "document.querySelector('#probe-verdict').innerText.includes('→')")
    shown = _VERDICT.search(page.locator("#probe-verdict").inner_text())
    assert shown, page.locator("#probe-verdict").inner_text()
    expected = gate.probe([{"role": "user", "content": _QUESTION}], TurnOverrides(mode="seed")).gate
    assert float(shown[1]) == pytest.approx(100 * expected.p_knows, abs=0.051)
    assert shown[2] == expected.decision
    assert page.locator("#probe-gauge .js-plotly-plot").count() == 1
    assert page.locator("#probe-signal-b .js-plotly-plot").count() == 1
    band = band_layers(gate.engine.arch.num_layers, settings.features.recall_band)
    depths = forming_depths(gate.engine.arch.num_layers, band)
    assert page.locator("#probe-forming [role=row]").count() == 1 + len(depths)  # header + one row per depth
    page.screenshot(path=tmp_path / "probe.png", full_page=True)
    if gate.applicability is not None:  # a greeting is not a knowledge question: the Probe tab says it passes
        page.locator("#question textarea").fill("Hi! How are you today?")
        page.locator("#probe-button").click()
        _wait_done(page, "document.querySelector('#probe-verdict').innerText.includes('pass')")
        assert "P(factual) = " in page.locator("#probe-verdict").inner_text()
        page.locator("#question textarea").fill(_QUESTION)

    page.get_by_role("tab", name="Head to head").click()
    budget = page.locator("#h2h-budget input[type=number]")
    budget.fill("12")
    budget.press("Enter")
    page.locator("#h2h-golds textarea").fill("Paris | City of Light")
    page.locator("#h2h-mode").get_by_text("seed", exact=True).click()  # seed always answers: both sides are marked
    page.locator("#h2h-button").click()
    _wait_done(page, "document.querySelector('#h2h-seeded-stats').innerText.includes('tokens')")
    golds = ["Paris", "City of Light"]
    for side in ("base", "seeded"):
        answer = page.locator(f"#h2h-{side}-answer textarea").input_value()
        assert answer.strip()
        mark = page.locator(f"#h2h-{side}-mark").inner_text().strip()
        assert mark == ("✓ correct" if matches(answer, golds) else "✗ incorrect")
        used = int(page.locator(f"#h2h-{side}-stats").inner_text().split()[0])
        assert used <= 12
    seeded = _VERDICT.search(page.locator("#h2h-verdict").inner_text())
    assert seeded and seeded[2] == expected.decision
    template = getattr(settings.policy.seeds, expected.decision)
    shown_seed = page.locator("#h2h-seed-text textarea").input_value()
    assert shown_seed.startswith(template.split("{pct}")[0] if expected.seed_text else "(no seed: this model answers")
    page.screenshot(path=tmp_path / "head_to_head.png", full_page=True)
    print("screenshots:", tmp_path)

    page.get_by_role("tab", name="Evaluation").click()
    shipped = load_evaluation(data_dir(model_slug(settings.model.id)))
    assert shipped.summaries and shipped.figures, f"nothing shipped in {shipped.directory}"
    assert "sidecar" in page.locator("#eval-text").inner_text()  # the metrics.md table, rendered
    assert str(shipped.rows[0][1]) in page.locator("#eval-metrics").inner_text()
    assert page.locator("#eval-figures img").count() == len(shipped.figures)
    assert page.locator("#eval-bands-plot .js-plotly-plot").count() == 1
    assert "bands: {low:" in page.locator("#eval-bands-table").inner_text()  # the gate.yaml lines
    low = page.locator("#band-low input[type=number]")
    low.fill("0.25")
    low.press("Enter")  # moving a band redraws the choice
    page.wait_for_function("document.querySelector('#eval-bands-table').innerText.includes('chosen (sliders) 0.25')",
                           timeout=30_000)
    page.screenshot(path=tmp_path / "evaluation.png", full_page=True)
    page.get_by_role("tab", name="Info").click()
    arch = gate.engine.arch
    assert f"{arch.num_layers} · {arch.hidden_size} · {arch.vocab_size}" in page.locator("#info-facts").inner_text()
    assert external == []

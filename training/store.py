"""Dataset files: one JSON row per example plus aligned float16 feature arrays (never raw activations)."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from gate.engine.features import Features
from gate.sidecar import data_dir

_ARRAYS = ("layer", "globals", "hidden", "top_tokens", "message")
# Raw bytes of features per file of a merged dataset (float16 compresses little: ~32 MB on disk). The files are
# tracked, and git hosts warn at 50 MB and refuse 100 MB; a model with a wider residual gets fewer rows per file.
SHARD_BYTES = 36 << 20
# Question and gold texts stay in their source packages (GPL-3.0 / CC BY-SA): shipped rows carry ids only.
SOURCE_TEXT = ("question", "golds", "history")


def is_factual(row: dict) -> bool:
    """A knowledge question (labelled by the model's own answer); rows built before chat turns existed all are."""
    return bool(row.get("factual", True))


# Knowledge questions asked with their options (training.sources.arcmc, obqamc). The default model is at chance on
# them (of its replies that name one option, 28% name the right one, against 25-33% by luck), so their labels
# measure luck, not recall: they teach the applicability head that such a turn is a knowledge question, and
# P(knows) is neither fitted nor measured on them.
OPTIONS_SOURCES = frozenset({"arcmc", "obqamc"})
# Knowledge questions that ask for an explanation (training.sources.alicewhat, fanouttopic): no short gold to
# label the reply by, so they too teach the applicability head only.
OPEN_SOURCES = frozenset({"alicewhat", "fanouttopic"})
OPEN_VARIANTS = frozenset({"then"})  # follow-ups about the answer (training.variants.then): no gold of their own


def variant_of(example_id: str) -> str:
    """How a knowledge question was asked: its variant (training/variants.py, after "~" in its id) or "plain"."""
    return example_id.partition("~")[2] or "plain"


def teaches_knows(row: dict) -> bool:
    """A knowledge question whose label P(knows) learns from and is measured on."""
    return (is_factual(row) and row["source"] not in OPTIONS_SOURCES | OPEN_SOURCES
            and variant_of(row.get("id", "")) not in OPEN_VARIANTS)


def dataset_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """The options of every step that reads a built dataset: --config, --model and --data (see dataset_folder)."""
    ap = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="gate.yaml (its model.id and sidecar_dir pick the folders)")
    ap.add_argument("--model", help="model id, instead of the config's model.id (e.g. qwen2.5-coder-1.5b-instruct)")
    ap.add_argument("--data", type=Path, help="dataset folder (default: data/<model-slug>)")
    return ap


def step_settings(args: argparse.Namespace):
    """The settings a step runs with: the config file, with --model (if given) as its model.id."""
    from gate.config import load_settings
    settings = load_settings(args.config)
    if getattr(args, "model", None):
        settings.model.id = args.model
    return settings


def dataset_folder(args: argparse.Namespace) -> Path:
    from gate.engine.loading import model_slug
    return args.data or data_dir(model_slug(step_settings(args).model.id))


def save_features(path: Path, feats: Features, ids: list[str], meta: dict) -> None:
    """Atomic compressed npz: a killed write never leaves a file that looks finished."""
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, ids=np.array(ids), meta=np.array(json.dumps(meta)),
                        **{k: getattr(feats, k) for k in _ARRAYS})
    os.replace(tmp, path)


def load_features(path: Path) -> tuple[Features, list[str], dict]:
    with np.load(path, allow_pickle=False) as z:
        hidden = z["hidden"]  # files from before the message read have none: an empty one keeps them readable
        empty = np.zeros((len(hidden), 0, hidden.shape[-1]), hidden.dtype)
        feats = Features(**{k: z[k] if k in z.files else empty for k in _ARRAYS})
        return feats, z["ids"].tolist(), json.loads(str(z["meta"]))


def _feature_file(directory: Path, k: int) -> Path:
    return directory / ("features.npz" if k == 0 else f"features-{k}.npz")


def feature_files(directory: Path) -> list[Path]:
    """A merged dataset's features files in row order: features.npz, then features-1.npz, features-2.npz, …"""
    files = [_feature_file(directory, 0)]
    while (more := _feature_file(directory, len(files))).exists():
        files.append(more)
    return files


def shard_rows(feats: Features) -> int:
    """Rows per features file: SHARD_BYTES of arrays, in whole 1,024s (at least one row) so that the cut does not
    move with a few bytes of layout (8,192 on the default model, 5,120 on Qwen 1.5B)."""
    row_bytes = sum(getattr(feats, k)[:1].nbytes for k in _ARRAYS) or 1
    rows = max(SHARD_BYTES // row_bytes, 1)
    return rows // 1024 * 1024 or rows


def save_dataset_features(directory: Path, feats: Features, ids: list[str], meta: dict) -> None:
    """The merged features, shard_rows per file (each written atomically); files left from a longer dataset are
    removed."""
    step = shard_rows(feats)
    shards = range(0, max(len(ids), 1), step)
    for k, start in enumerate(shards):
        save_features(_feature_file(directory, k), feats[start:start + step], ids[start:start + step], meta)
    for stale in feature_files(directory)[len(shards):]:
        stale.unlink()


def dataset_index(directory: Path) -> tuple[list[str], dict | None]:
    """The merged features' row ids and settings, read without the arrays (None: no features, or files written by
    different builds, as a write killed between files leaves them)."""
    ids, metas = [], []
    for path in feature_files(directory):
        if not path.exists():
            return [], None
        more, meta = features_index(path)
        ids += more
        metas.append(meta)
    return ids, metas[0] if all(m == metas[0] for m in metas) else None


def features_index(path: Path) -> tuple[list[str], dict]:
    """One features file's row ids and settings, without reading its arrays."""
    with np.load(path, allow_pickle=False) as z:
        return z["ids"].tolist(), json.loads(str(z["meta"]))


def load_dataset_features(directory: Path) -> tuple[Features, list[str], dict]:
    """The merged features of a built dataset, all its files in row order."""
    parts = [load_features(path) for path in feature_files(directory)]
    if any(meta != parts[0][2] for _, _, meta in parts):
        raise ValueError(f"{directory}: its features files come from different builds; run the build again to merge")
    return concat([f for f, _, _ in parts]), [i for _, ids, _ in parts for i in ids], parts[0][2]


def save_rows(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, path)


def load_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def concat(parts: list[Features]) -> Features:
    return Features(*(np.concatenate([getattr(p, k) for p in parts]) for k in _ARRAYS))


def save_examples(path: Path, rows: list[dict]) -> None:
    """The shipped example rows: everything but the source packages' own text."""
    save_rows(path, [{k: v for k, v in r.items() if k not in SOURCE_TEXT} for r in rows])


def load_examples(path: Path) -> list[dict]:
    """Shipped example rows with question and golds read back, by id, from the installed source packages."""
    from training.sources import by_id
    rows = load_rows(path)
    text = by_id(rows)
    missing = [r["id"] for r in rows if r["id"] not in text]
    if missing:
        raise ValueError(f"{path}: {len(missing)} example ids (e.g. {missing[0]}) are not in the installed source "
                         f"packages; install the versions scripts/setup.sh pins")
    return [{**r, **{k: getattr(text[r["id"]], k) for k in SOURCE_TEXT}} for r in rows]


def load_dataset(directory: Path) -> tuple[list[dict], Features, dict]:
    """Rows (with their source text) and features of a built dataset, checked to be aligned by id."""
    rows = load_examples(directory / "examples.jsonl")
    feats, ids, meta = load_dataset_features(directory)
    if ids != [r["id"] for r in rows]:
        raise ValueError(f"{directory}: examples.jsonl and its features files are not aligned")
    return rows, feats, meta

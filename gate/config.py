"""Settings: one pydantic model, loaded from YAML, the single source of truth for every knob."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

ENV_VAR = "GATE_CONFIG"
DEFAULT_PATH = Path(__file__).resolve().parent.parent / "gate.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSettings(_Strict):
    id: str = "smollm2-135m-instruct"
    engine: Literal["transformers", "vllm"] = Field(
        "transformers", description="transformers: one turn at a time in this process; vllm: many turns at "
        "once, the gate read inside vLLM's own prefill (settings in the `vllm` section)")
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto = the model profile's preference, else bfloat16 on CUDA/MPS and on CPUs that "
                            "compute it natively (AVX512-BF16, AMX, Arm BF16), float32 elsewhere")
    cache_dir: str = "~/.cache/knowledge-gate"
    system_prompt: str | None = Field(None, description="pinned when a conversation has no system message; "
                                      "null = the model profile's (gate models), \"\" = none")
    stop_tokens: list[str] | None = Field(None, description="end-of-turn tokens besides EOS; null = the profile's")
    thinking: Literal["auto", "gemma4", "think", "prefill"] = Field(
        "auto", description="auto = the model profile's, else detected from the tokenizer")
    after_seed: str | None = Field(None, description="what the model always writes right after a seed, fed with "
                                   "it so the first generated token is visible; null = the profile's, \"\" = none")
    prefill_seeds: list[Literal["answer", "hedge", "abstain"]] | None = Field(
        None, description="on a model without a thinking channel, the decisions whose seed is written as a hidden "
                          "prefill of the reply (the others are answered plainly, after their opening); null = the "
                          "profile's")
    threads: int | None = Field(None, ge=1, description="torch CPU threads; None = torch's default. On a CPU "
                                "shared with other jobs, 1 avoids threads spinning against each other")


class FeatureSettings(_Strict):
    positions: int = Field(4, ge=1, le=64, description="last prompt positions read by the lens")
    recall_band: tuple[float, float] = (0.35, 0.75)
    hidden_depths: tuple[float, ...] = (0.6, 1.0)
    # Depths whose residual is averaged over the latest user message's own tokens (the question as the model
    # read it, not the template tokens after it); None: the model's profile (gate/models.py), () for none.
    message_depths: tuple[float, ...] | None = None

    @field_validator("recall_band")
    @classmethod
    def _band(cls, band: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 <= band[0] < band[1] <= 1.0:
            raise ValueError(f"must satisfy 0 <= low < high <= 1, got {band}")
        return band

    @field_validator("hidden_depths", "message_depths")
    @classmethod
    def _depths(cls, depths: tuple[float, ...] | None, info: ValidationInfo) -> tuple[float, ...] | None:
        """Fractions of depth; the final-position read needs at least one, the message read may be off (())."""
        required = info.field_name == "hidden_depths"
        if depths is not None and ((required and not depths) or not all(0.0 < d <= 1.0 for d in depths)):
            raise ValueError(f"must be fractions of depth in (0, 1], got {depths}")
        return depths


class Bands(_Strict):
    low: float = 0.4
    high: float = 0.7

    @model_validator(mode="after")
    def _ordered(self) -> "Bands":
        if not 0.0 <= self.low <= self.high <= 1.0:
            raise ValueError(f"bands must satisfy 0 <= low <= high <= 1, got low={self.low} high={self.high}")
        return self


class Seeds(_Strict):
    answer: str = "I'm fairly sure I know this (P(knows) = {pct}%). I'll answer directly and briefly."
    hedge: str = ("I'm not sure I know this (P(knows) = {pct}%). I'll start by saying I'm not certain, "
                  "then give my best attempt.")
    abstain: str = ("I probably don't know this (P(knows) = {pct}%). I won't guess; I'll say plainly "
                    "that I don't know.")

    @model_validator(mode="after")
    def _placeholders(self) -> "Seeds":
        for name in ("answer", "hedge", "abstain"):
            try:
                getattr(self, name).format(pct=50)
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"seeds.{name}: only the placeholder {{pct}} is allowed ({exc!r}); "
                                 f"write literal braces as {{{{ }}}}") from None
        return self


class Openings(_Strict):
    """What the gate writes at the start of a seeded reply, per decision, for a model without a thinking channel.
    There the seed is a hidden prefill that both shipped models read past (after the hedge seed Qwen hedged 1
    reply in 61), so a hedge reaches the user only if the gate says it. The model never reads the opening (fed
    to SmolLM2, "I'm not certain, but" turned its answers into "… I think I'm not sure."): its reply follows
    after a space, as it would anyway. "" writes nothing; a model with a thinking channel gets none (it shows
    its seeded thought)."""
    answer: str = ""
    hedge: str = "I'm not certain about this."
    abstain: str = ""


# Chosen on both shipped models' leave-one-source-out results (data/<model>/applicability.md): where the shares
# of held-out chat turns passed and knowledge questions gated balance (0.5 gated more than it passed on both).
FACTUAL_THRESHOLD = 0.6


class PolicySettings(_Strict):
    bands: Bands = Bands()
    mode: Literal["off", "seed", "gate"] = "seed"
    factual_threshold: float = Field(FACTUAL_THRESHOLD, ge=0.0, le=1.0, description="a turn whose P(factual) — the chance that "
                                     "answering it needs the model's stored knowledge of facts — is below this "
                                     "passes the gate: no seed, no abstention, plain generation")
    seeds: Seeds = Seeds()
    openings: Openings = Openings()
    abstention: str = "I don't know the answer to that, and I'd rather not guess."


class GenerationSettings(_Strict):
    max_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)


class ServerSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    api_key: str | None = None
    model_name: str | None = None
    ui: bool = True
    max_body_bytes: int = Field(2 * 2 ** 20, ge=1024, description="larger request bodies get 413 before they are "
                                "read in full; 2 MiB holds far more text than any context window of the models here")
    max_tokens_limit: int = Field(1024, ge=1, description="the most tokens one request may ask for: a request above "
                                  "it gets 400, so one client cannot hold the single engine for minutes")
    cors_origins: list[str] = Field(default_factory=list, description="browser origins allowed to call the API "
                                    "(CORS), e.g. [\"http://localhost:3000\"] or [\"*\"]; empty = CORS off")


# Engine arguments the vLLM engine sets itself (from the settings named here), so they cannot be passed through.
VLLM_OWNED = {"model": "model.id", "tokenizer": "model.id", "dtype": "model.dtype", "block_size": "vllm.block_size",
              "kv_cache_memory_bytes": "vllm.kv_cache_gb", "enable_prefix_caching": "always on (a conversation's "
              "next turn reuses its earlier turns' KV)", "enforce_eager": "always on (hooks do not fire in compiled graphs)",
              "worker_extension_cls": "the gate's hooks", "scheduler_cls": "the gate's (probes' cache reads)",
              "pipeline_parallel_size": "not supported (the hooks "
              "read every layer on one rank)"}


class VllmSettings(_Strict):
    block_size: int = Field(32, ge=1, description="KV block size; prefix caching reuses whole blocks only, so "
                            "small blocks reuse more of the prompt (the CPU backend wants a multiple of 32)")
    kv_cache_gb: float | None = Field(1.0, gt=0, description="KV cache size; None: vLLM's default (on GPUs a "
                                      "fraction of memory, engine_args.gpu_memory_utilization)")
    max_turns: int = Field(64, ge=1, description="turns served at once; more wait in the server's queue")
    engine_args: dict[str, Any] = Field(default_factory=dict, description="passed to vLLM's engine as is: "
                                        "tensor_parallel_size, max_model_len, max_num_seqs, ...")

    @field_validator("engine_args")
    @classmethod
    def _not_owned(cls, args: dict[str, Any]) -> dict[str, Any]:
        owned = [f"{k} ({VLLM_OWNED[k]})" for k in args if k in VLLM_OWNED]
        if owned:
            raise ValueError(f"set by the gate, not here: {', '.join(owned)}")
        return args


class Settings(_Strict):
    model: ModelSettings = ModelSettings()
    features: FeatureSettings = FeatureSettings()
    policy: PolicySettings = PolicySettings()
    generation: GenerationSettings = GenerationSettings()
    server: ServerSettings = ServerSettings()
    vllm: VllmSettings = VllmSettings()
    sidecar_dir: str = "ckpts"

    @model_validator(mode="after")
    def _default_within_limit(self) -> "Settings":
        """A request that leaves max_tokens unset gets generation.max_tokens, so it must respect the server's limit."""
        if self.generation.max_tokens > self.server.max_tokens_limit:
            raise ValueError(f"generation.max_tokens ({self.generation.max_tokens}) exceeds server.max_tokens_limit "
                             f"({self.server.max_tokens_limit})")
        return self


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the offending key."""


def load_settings(path: str | os.PathLike | None = None) -> Settings:
    """Load settings from `path`, else $GATE_CONFIG, else ./gate.yaml at the repo root (else defaults)."""
    chosen = Path(path or os.environ.get(ENV_VAR) or DEFAULT_PATH).expanduser()
    if not chosen.exists():
        if path or os.environ.get(ENV_VAR):
            raise ConfigError(f"config file not found: {chosen}")
        return Settings()
    raw = yaml.safe_load(chosen.read_text()) or {}
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(f"invalid config {chosen}:\n" + "\n".join(lines)) from None
    # API key may come from the environment so it never sits in a file.
    if settings.server.api_key is None and os.environ.get("GATE_API_KEY"):
        settings.server.api_key = os.environ["GATE_API_KEY"]
    return settings

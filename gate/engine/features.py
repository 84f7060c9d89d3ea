"""Signal A (logit-lens trajectory) and Signal B (MLP-write direct logit attribution) as named features.

Everything is computed where the captured tensors live; only small float16 arrays move to the CPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from gate.config import FeatureSettings
from gate.engine.arch import ArchMap
from gate.engine.capture import Activations
from gate.engine.lens import distribution_stats, lens_logits, softmax_entropy

# Per-layer features. The lens (one unembedding product per layer and signal) reads the final prompt
# position only — the one that predicts the answer — which keeps the probe to ~2·L lens rows. The
# norm-based write features are free, so they are also averaged over the last K prompt positions.
_LENS = ("entropy", "margin", "maxprob", "kl_prev", "p_final_top",   # Signal A: the residual's lens
         "write_ratio", "peakedness", "write_cos", "dla_top_z")      # Signal B: the MLP write
LAYER_FEATURES: tuple[str, ...] = (*(f"{n}_last" for n in _LENS), "write_ratio_avg", "write_cos_avg")
GLOBAL_FEATURES: tuple[str, ...] = (
    "final_entropy", "final_margin", "final_maxprob", "settling_frac", "min_entropy", "min_entropy_frac",
    "band_entropy", "band_kl", "band_peakedness", "band_write_ratio", "band_peak_max", "band_peak_argmax_frac",
    "band_p_final_top", "log_prompt_tokens",
)
_ROWS_PER_CHUNK = 512  # lens rows per matrix product: bounds the [rows, vocab] temporaries


@dataclass
class Features:
    layer: np.ndarray      # [B, L, F] float16
    globals: np.ndarray    # [B, G] float16
    hidden: np.ndarray     # [B, H, d] float16: final-position residual at the configured depths
    top_tokens: np.ndarray  # [B, L] int: lens top-1 token per layer at the final position
    message: np.ndarray    # [B, M, d] float16: residual averaged over the latest user message, at message_depths

    def __getitem__(self, i: int | slice) -> "Features":
        return Features(self.layer[i], self.globals[i], self.hidden[i], self.top_tokens[i], self.message[i])


class LazyFeatures(Features):
    """A served turn's features: the residual reads at once, the lens trajectory (layer, globals, top_tokens)
    only when something reads it. Heads that read the residual alone (the sidecar; the applicability head's
    early read, which decides most turns) then decide without waiting for the lens."""

    def __init__(self, hidden: np.ndarray, message: np.ndarray, full: Callable[[], Features]):
        self.hidden, self.message, self._full, self._done = hidden, message, full, None

    @property
    def lens_read(self) -> bool:
        """Whether the lens trajectory was computed (or waited for)."""
        return self._done is not None

    def full(self) -> Features:
        """All the features: computes (or waits for) the lens trajectory the first time."""
        if self._done is None:
            self._done = self._full()
        return self._done

    layer = property(lambda self: self.full().layer)
    globals = property(lambda self: self.full().globals)
    top_tokens = property(lambda self: self.full().top_tokens)


def band_layers(num_layers: int, band: tuple[float, float]) -> slice:
    """Layer indices of the mid-depth recall band, at least one layer wide."""
    lo = int(round(band[0] * num_layers))
    hi = max(lo + 1, int(round(band[1] * num_layers)))
    return slice(lo, min(hi, num_layers))


def hidden_layer_indices(num_layers: int, depths: tuple[float, ...]) -> list[int]:
    return [max(0, int(round(d * num_layers)) - 1) for d in depths]


def _write_geometry(mid: torch.Tensor, write: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """‖write‖/‖resid before the MLP‖ and cosine with the previous layer's write, [..., L, K]."""
    write, mid = write.float(), mid.float()
    norm = write.norm(dim=-1)
    ratio = norm / mid.norm(dim=-1).clamp_min(1e-6)
    unit = write / norm.clamp_min(1e-6)[..., None]
    cos = torch.zeros_like(ratio)
    cos[:, 1:] = (unit[:, 1:] * unit[:, :-1]).sum(-1)
    return ratio, cos


class LensTrajectory:
    """Lens features [b, L, 7] at the final position and the lens top-1 ids [b, L], fed the layers a group at a
    time in depth order: the vLLM worker runs a probe's lens while its forward is still computing the deeper
    layers; the transformers engine feeds all layers at once. Each layer's lens logits, log-sum-exp and write
    logits are kept until the last layer names the token that p_final_top and dla_top_z read at every layer."""

    def __init__(self) -> None:
        self.layers = 0
        self._stats: list[dict[str, torch.Tensor]] = []  # per group: [b, l] columns
        self._logits: list[torch.Tensor] = []            # per group: [b, l, V] residual lens logits
        self._w_logits: list[torch.Tensor] = []          # per group: [b, l, V] write logits
        self._result: tuple[torch.Tensor, torch.Tensor] | None = None

    def add(self, arch: ArchMap, resid: torch.Tensor, write: torch.Tensor) -> None:
        """The next layers' final-position residuals and MLP writes, [b, l, d] each."""
        b, l, d = resid.shape
        logits = lens_logits(arch, torch.cat([resid, write], dim=0).reshape(-1, d))  # one product for both signals
        logits = logits.reshape(2 * b, l, -1)
        x, w = logits[:b], logits[b:]  # slices, not split(): distribution_stats masks x in place
        a = distribution_stats(x)
        p, lse = a.pop("p"), a["lse"]
        # KL(layer ‖ layer before) = Σ p·(x − lse − x_before + lse_before) = lse_before − entropy − Σ p·x_before:
        # one dot product, no [.., V] temporaries; the first layer of this group against the last of the previous one
        entropy = a["entropy"]
        kl = torch.zeros_like(entropy)
        kl[:, 1:] = lse[:, :-1] - entropy[:, 1:] - torch.linalg.vecdot(p[:, 1:], x[:, :-1])
        if self._logits:
            before = self._logits[-1][:, -1]
            kl[:, 0] = self._stats[-1]["lse"][:, -1] - entropy[:, 0] - torch.linalg.vecdot(p[:, 0], before)
        del p
        peaked = float(np.log(w.shape[-1])) - softmax_entropy(w)["entropy"]  # log V − the write logits' entropy
        mean = w.mean(-1)                                  # moments by sums: std() makes a slow second pass
        std = (torch.linalg.vecdot(w, w) / w.shape[-1] - mean * mean).clamp_min(1e-12).sqrt()
        self._stats.append({**a, "kl": kl, "peaked": peaked, "mean": mean, "std": std})
        self._logits.append(x)
        self._w_logits.append(w)
        self.layers += l

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """[b, L, 7] in _LENS order (the Signal A and lens-based Signal B columns) and the top-1 ids [b, L]."""
        if self._result is None:
            col = {k: torch.cat([g[k] for g in self._stats], dim=1) for k in self._stats[0]}
            final_top = col["argmax"][:, -1:, None]  # the last layer's pick, read at every layer
            at_top = [(x.gather(-1, final_top.expand(*x.shape[:2], 1)).squeeze(-1),
                       w.gather(-1, final_top.expand(*w.shape[:2], 1)).squeeze(-1))
                      for x, w in zip(self._logits, self._w_logits)]
            p_final_top = torch.exp(torch.cat([x for x, _ in at_top], dim=1) - col["lse"])
            dla_z = (torch.cat([w for _, w in at_top], dim=1) - col["mean"]) / col["std"]
            self._logits, self._w_logits = [], []
            cols = [col["entropy"], col["margin"], col["maxprob"], col["kl"], p_final_top, col["peaked"], dla_z]
            self._result = torch.stack(cols, dim=-1), col["argmax"]
        return self._result


def _lens_features(arch: ArchMap, resid: torch.Tensor, write: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lens features [b, L, 7] at the final position for a chunk, and the lens top-1 ids [b, L]."""
    trajectory = LensTrajectory()
    trajectory.add(arch, resid, write)
    return trajectory.result()


@torch.inference_mode()
def compute_features(arch: ArchMap, cap: Activations, settings: FeatureSettings,
                     lens: tuple[torch.Tensor, torch.Tensor] | None = None) -> Features:
    """Turn one capture (batched) into per-layer features, global scalars and hidden-state summaries. `lens`:
    the capture's LensTrajectory result where it was computed already (during the forward)."""
    B, L, K, _ = cap.resid.shape
    if lens is None:
        step = max(1, _ROWS_PER_CHUNK // (2 * L))
        parts = [_lens_features(arch, cap.resid[s:s + step, :, -1], cap.write[s:s + step, :, -1])
                 for s in range(0, B, step)]
        lens = torch.cat([f for f, _ in parts]), torch.cat([t for _, t in parts])
    lens_t, top = lens                                        # [B, L, 7], [B, L]
    ratio, cos = _write_geometry(cap.resid_mid, cap.write)    # [B, L, K]
    # Averages over the last K real positions (left padding: padding only when the prompt is shorter than K).
    real = cap.attention_mask[:, -K:].to(ratio.dtype)[:, None, :]
    ratio_avg, cos_avg = ((x * real).sum(-1) / real.sum(-1).clamp_min(1) for x in (ratio, cos))
    entropy, margin, maxprob, kl, p_top, peaked, dla_z = lens_t.unbind(-1)
    layer = torch.stack([entropy, margin, maxprob, kl, p_top, ratio[..., -1], peaked, cos[..., -1], dla_z,
                         ratio_avg, cos_avg], dim=-1)         # [B, L, F] in LAYER_FEATURES order

    col = {n: layer[..., i] for i, n in enumerate(LAYER_FEATURES)}
    band = band_layers(L, settings.recall_band)
    changes = (top[:, 1:] != top[:, :-1]).float() * torch.arange(1, L, device=top.device)
    peak_band = col["peakedness_last"][:, band]
    ent = col["entropy_last"]
    glob = torch.stack([
        ent[:, -1], col["margin_last"][:, -1], col["maxprob_last"][:, -1],
        changes.max(dim=1).values / max(L - 1, 1),
        ent.min(dim=1).values, ent.argmin(dim=1).float() / max(L - 1, 1),
        ent[:, band].mean(1), col["kl_prev_last"][:, band].mean(1), peak_band.mean(1),
        col["write_ratio_last"][:, band].mean(1), peak_band.max(1).values,
        (peak_band.argmax(1).float() + band.start) / max(L - 1, 1),
        col["p_final_top_last"][:, band].mean(1),
        torch.log(cap.attention_mask.sum(1).float()),
    ], dim=-1)
    hidden, message = residual_features(cap, settings)
    return Features(layer=layer.to("cpu", torch.float16).numpy(), globals=glob.to("cpu", torch.float16).numpy(),
                    hidden=hidden, top_tokens=top.cpu().numpy(), message=message)


@torch.inference_mode()
def residual_features(cap: Activations, settings: FeatureSettings) -> tuple[np.ndarray, np.ndarray]:
    """The residual reads, known as soon as the forward ends: final position at the hidden depths [B, H, d],
    the message average [B, M, d] (float16)."""
    hidden = cap.resid[:, hidden_layer_indices(cap.resid.shape[1], settings.hidden_depths), -1]
    return hidden.to("cpu", torch.float16).numpy(), cap.message.to("cpu", torch.float16).numpy()

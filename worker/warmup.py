"""Engine warm-up before the worker takes jobs: one prefill step of each size the engine may
meet, so the kernels that compile per batch shape do so now, not in front of the first users.

Why: on an H200 the Mixtral-shape benchmark's engine spent ~2.5 s of its measured run in
Triton compiling the fused-MoE kernel (py-spy, docs/benchmarks/README.md), after two warm-up
bursts, and every first token of that run waited. The kernel picks its configuration by the
step's token count and is specialised on whether sizes divide by 16; a queue's arrivals make
steps of every size, a fixed warm-up burst only a few. So the sweep takes each size of a ~1.5x
ladder from 1 to the step budget, and the size one above it.

The prompts are random token ids (no tokenizer, no prefix-cache hits) and make one token each.
Compiled kernels stay in Triton's disk cache, so a restarted worker's sweep is quick.
"""

import asyncio
import logging
import random
import time
from typing import Any

log = logging.getLogger(__name__)

# The token ids are drawn below this: every vocabulary has at least this many.
SAFE_VOCAB = 1000


def step_sizes(budget: int) -> list[int]:
    """Token counts per step: a ~1.5x ladder (1, 2, 3, 4, 6, 8, 12, 16, 24, ...) up to the
    budget, each with its successor (one divides by 16 where the other does not)."""
    ladder, size = set(), 1
    while size <= budget:
        ladder.update({size, size + 1, size + size // 2, size + size // 2 + 1})
        size *= 2
    ladder.add(budget)
    return sorted(size for size in ladder if size <= budget)


def prompt_lengths(total: int, longest: int) -> list[int]:
    """Prompts that add up to `total` tokens, none longer than `longest`."""
    count = -(-total // longest)
    base, extra = divmod(total, count)
    return [base + (i < extra) for i in range(count)]


async def warm_up(engine: Any) -> int:
    """Run the sweep on a started AsyncLLM, up to its step budget; returns the sizes run."""
    from vllm import SamplingParams

    budget = engine.vllm_config.scheduler_config.max_num_batched_tokens
    max_model_len = engine.vllm_config.model_config.max_model_len
    params = SamplingParams(max_tokens=1, ignore_eos=True, temperature=1.0)
    rng = random.Random(0)
    started = time.monotonic()
    sizes = step_sizes(budget)
    for index, size in enumerate(sizes):
        # Handed over together, so the engine takes them in one step where the budget allows.
        prompts = [
            {"prompt_token_ids": [rng.randrange(1, SAFE_VOCAB) for _ in range(length)]}
            for length in prompt_lengths(size, max_model_len - 1)
        ]
        await asyncio.gather(
            *(
                _drain(engine.generate(prompt, params, f"warmup-{index}-{n}"))
                for n, prompt in enumerate(prompts)
            )
        )
    log.info(
        "engine warm-up: %d step sizes up to %d tokens in %.1fs",
        len(sizes),
        budget,
        time.monotonic() - started,
    )
    return len(sizes)


async def _drain(outputs: Any) -> None:
    async for _ in outputs:
        pass

"""Engine warm-up before the worker takes jobs: one prefill step of each size the engine may
meet, and one batch of each number of sequences, so the kernels that compile per batch shape
do so now, not in front of the first users.

Why: a mixture-of-experts engine otherwise spends seconds of its first real traffic in Triton
compiling the fused-MoE kernel, even after warm-up bursts, and every first token waits. The
kernel picks its configuration by the step's token count and is specialised on whether sizes
divide by 16; a queue's arrivals make steps of every size, a fixed warm-up burst only a few.
So the sweep takes each size of a ~1.5x ladder from 1 to the step budget, and the size one
above it.

The sampler has its own Triton kernel for top-p/top-k over batches of 8 sequences or more,
shaped by the number of sequences in the step; so the second sweep runs batches of each size
on the same ladder up to max_num_seqs, with top-p on.

The prompts are random token ids (no tokenizer, no prefix-cache hits). Compiled kernels stay
in Triton's disk cache, so a restarted worker's sweep is quick.
"""

import asyncio
import logging
import random
import time
from typing import Any

log = logging.getLogger(__name__)

# The token ids are drawn below this: every vocabulary has at least this many.
SAFE_VOCAB = 1000
# Prompt length in the batch sweep: short, so the largest batch fits one step's budget.
BATCH_PROMPT_TOKENS = 4


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


async def warm_up(engine: Any) -> tuple[int, int]:
    """Run both sweeps on a started AsyncLLM; returns how many step sizes and batch sizes."""
    from vllm import SamplingParams

    scheduler = engine.vllm_config.scheduler_config
    budget, max_seqs = scheduler.max_num_batched_tokens, scheduler.max_num_seqs
    max_model_len = engine.vllm_config.model_config.max_model_len
    rng = random.Random(0)
    started = time.monotonic()

    async def run(name: str, lengths: list[int], params: Any) -> None:
        # Handed over together, so the engine takes them in one step where the budget allows.
        prompts = [
            {
                "type": "token",
                "prompt_token_ids": [rng.randrange(1, SAFE_VOCAB) for _ in range(length)],
            }
            for length in lengths
        ]
        await asyncio.gather(
            *(
                _drain(engine.generate(prompt, params, f"warmup-{name}-{n}"))
                for n, prompt in enumerate(prompts)
            )
        )

    steps = step_sizes(budget)
    one_token = SamplingParams(max_tokens=1, ignore_eos=True)
    for size in steps:
        await run(f"step{size}", prompt_lengths(size, max_model_len - 1), one_token)
    # Two tokens: the batch is sampled once after its prefill and once as a decode step.
    batches = step_sizes(max(1, min(max_seqs, budget // BATCH_PROMPT_TOKENS)))
    top_p = SamplingParams(max_tokens=2, ignore_eos=True, temperature=0.8, top_p=0.9)
    for count in batches:
        await run(f"batch{count}", [BATCH_PROMPT_TOKENS] * count, top_p)
    log.info(
        "engine warm-up: %d step sizes up to %d tokens, %d batch sizes up to %d sequences, "
        "in %.1fs",
        len(steps),
        budget,
        len(batches),
        batches[-1],
        time.monotonic() - started,
    )
    return len(steps), len(batches)


async def _drain(outputs: Any) -> None:
    async for _ in outputs:
        pass

"""Measured runs of the queue and of the bare engine taken in turns, with both engines up.

Run one after the other, the two sides were measured minutes apart, and a small shared
virtual machine drifts by more than the queue's cost in that time: the bare engine's first
tokens and the throughput ratio moved by tens of percent between runs of the same code. Here
each queue run is followed at once by a bare run of the same prompts, so
both sides of a pair meet the same spell of the machine, and the pair with the median ratio
is the one reported, every pair's figures beside it.

Both engines must fit in memory at once: on a CPU host they do; on a GPU the worker's engine
takes most of the GPU's memory, so GPU runs keep one side after the other.

Each run waits `SETTLE_S` first. After its last step, a vLLM engine's worker process keeps
polling its shared-memory queue (sched_yield) for a second (`SpinCondition.busy_loop_s` in
vllm/distributed/device_communicators/shm_broadcast.py), and on a small CPU host vLLM binds
both engines' workers to the same core: without the wait, the bare single jobs ran at less
than half the queue's speed.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.workload import RunResult

# Longer than vLLM's one-second busy loop after an engine's last step (above).
SETTLE_S = 1.5


@dataclass
class QueueRun:
    run: RunResult
    # How the run went inside the stack: timeline, CPU use, claim instants.
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Pair:
    queue: QueueRun
    bare: RunResult

    @property
    def ratio(self) -> float:
        return self.queue.run.tok_s / self.bare.tok_s

    def summary(self) -> dict[str, float]:
        return {
            "queue_tok_s": round(self.queue.run.tok_s, 1),
            "bare_tok_s": round(self.bare.tok_s, 1),
            "ratio": round(self.ratio, 4),
        }


async def take_turns(
    names: list[str],
    queue_run: Callable[[str], Awaitable[QueueRun]],
    bare_run: Callable[[str], Awaitable[RunResult]],
    settle_s: float = SETTLE_S,
) -> list[Pair]:
    """One pair per run name, the queue first, each run `settle_s` after the one before;
    each name stands for the same prompts on both sides (workload.Prompts)."""
    pairs = []
    for name in names:
        await asyncio.sleep(settle_s)
        queue = await queue_run(name)
        await asyncio.sleep(settle_s)
        pairs.append(Pair(queue, await bare_run(name)))
    return pairs


def median_pair(pairs: list[Pair]) -> Pair:
    """The pair whose ratio is the median (the upper middle one of an even count)."""
    return sorted(pairs, key=lambda pair: pair.ratio)[len(pairs) // 2]

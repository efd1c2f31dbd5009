"""The order a batch's jobs are released in. With `release_order=prefix` (the default),
prompts that begin alike are released together: sorted by what the model reads first, lines
that share a system prompt or a few-shot block stand next to each other, so they reach the
engine in the same waves and its prefix cache computes the shared part once rather than once
per wave that holds some of them. `release_order=input` keeps the file's order. Either way
the results keep their line numbers.
"""

from collections.abc import Sequence
from typing import Literal

import orjson

from api.jobs.schemas import JobInput

ReleaseOrder = Literal["prefix", "input"]


def release_ranks(jobs: Sequence[JobInput], order: ReleaseOrder) -> list[int]:
    """Each job's place in the release order (0 first), in the jobs' own order."""
    if order == "input":
        return list(range(len(jobs)))
    # Stable: lines that read the same keep the file's order among them.
    by_prefix = sorted(range(len(jobs)), key=lambda index: _reads(jobs[index]))
    ranks = [0] * len(jobs)
    for rank, index in enumerate(by_prefix):
        ranks[index] = rank
    return ranks


def _reads(job: JobInput) -> tuple[int, bytes | tuple[int, ...]]:
    # One kind of input is never compared with another: the tag decides first.
    if job.prompt is not None:
        return 0, job.prompt.encode()
    if job.prompt_token_ids is not None:
        return 1, tuple(job.prompt_token_ids)
    # The turns in order, each role before its content, as the chat template lays them out.
    turns = [(turn.get("role"), turn.get("content")) for turn in job.messages_json() or []]
    return 2, orjson.dumps(turns)

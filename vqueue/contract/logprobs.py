"""The log probabilities of a job's tokens, as a worker records them and the API renders them.

For each generated token: its offset in the job's text (vLLM's `text_offset`: the lengths of
the tokens before it, added up) and the engine's candidates at that position, in the engine's
order: the sampled token first, then the top alternatives (the `Logprob` dict vLLM returns,
where the sampled token appears once even when it is among the top). OpenAI's completion and
chat shapes are cut from this exactly as vLLM's server cuts them (api/openai/logprobs.py).

A job asks for them with its `logprobs` parameter: how many alternatives per token, 0 for
the sampled token's alone. The deltas of its token log carry their tokens' entries, and its
row in Postgres all of them, so a stream and a poll give the same.
"""

import math
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

# What vLLM's server sends for a logprob of -inf (JSON has no infinities).
FLOOR = -9999.0
# vLLM's default `max_logprobs`: the most alternatives the engine returns per token.
MAX_LOGPROBS = 20

# (token text, logprob) of one candidate.
Candidate = tuple[str, float]
# (text offset, candidates) of one generated token; its first candidate is the sampled one.
TokenLogprobs = tuple[int, list[Candidate]]


def clamped(logprob: float) -> float:
    return FLOOR if math.isnan(logprob) or logprob < FLOOR else logprob


def token_entry(offset: int, candidates: Iterable[Candidate]) -> TokenLogprobs:
    return offset, [(token, clamped(logprob)) for token, logprob in candidates]


def encode(tokens: list[TokenLogprobs]) -> str:
    """As a token-log entry and the jobs.logprobs column carry them: compact JSON."""
    return orjson.dumps(
        [[offset, [list(c) for c in candidates]] for offset, candidates in tokens]
    ).decode()


def decode(value: str | list[Any] | None) -> list[TokenLogprobs]:
    """From encode()'s text (a row's `logprobs` column, a log entry's field), or from that
    JSON already parsed."""
    if not value:
        return []
    parsed = orjson.loads(value) if isinstance(value, str) else value
    return [
        (int(offset), [(str(t), float(lp)) for t, lp in candidates])
        for offset, candidates in parsed
    ]


def from_engine(
    token_ids: list[int], positions: list[Mapping[int, Any]], offset: int
) -> tuple[list[TokenLogprobs], int]:
    """The entries of new tokens from a vLLM completion output (`token_ids`, and `logprobs`:
    one dict of token id to Logprob per token), the first at text offset `offset`; returns
    them and the offset after the last."""
    found = []
    for token_id, position in zip(token_ids, positions, strict=False):
        sampled = position.get(token_id)
        ordered = ([(token_id, sampled)] if sampled is not None else []) + [
            (other, logprob) for other, logprob in position.items() if other != token_id
        ]
        candidates = [(logprob.decoded_token or "", logprob.logprob) for _, logprob in ordered]
        found.append(token_entry(offset, candidates))
        offset += len(candidates[0][0]) if candidates else 0
    return found, offset


def from_offset(value: str | list[Any] | None, position: int) -> list[TokenLogprobs]:
    """The entries of the tokens at or past text offset `position`."""
    return [token for token in decode(value) if token[0] >= position]


def after(value: str | list[Any] | None, position: int) -> str:
    """encode() of the entries of the tokens at or past text offset `position`."""
    return encode(from_offset(value, position))

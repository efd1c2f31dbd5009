"""A job's token log probabilities (vqueue/contract/logprobs.py) in OpenAI's shapes, cut as
vLLM's server cuts them: a completion's `top_logprobs` holds the first `logprobs` + 1
candidates of each token (the sampled one and its alternatives), a chat message's the first
`top_logprobs`."""

from typing import Any

from vqueue.contract.logprobs import TokenLogprobs


def completion_logprobs(tokens: list[TokenLogprobs], asked: int) -> dict[str, Any]:
    return {
        "text_offset": [offset for offset, _ in tokens],
        "token_logprobs": [candidates[0][1] for _, candidates in tokens],
        "tokens": [candidates[0][0] for _, candidates in tokens],
        "top_logprobs": [dict(candidates[: asked + 1]) for _, candidates in tokens],
    }


def _candidate(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8", "replace"))}


def chat_logprobs(tokens: list[TokenLogprobs], asked: int) -> dict[str, Any]:
    return {
        "content": [
            {
                **_candidate(*candidates[0]),
                "top_logprobs": [_candidate(*candidate) for candidate in candidates[:asked]],
            }
            for _, candidates in tokens
        ]
    }

"""A request's token counts in OpenAI's `usage` shape, as vLLM's server counts them."""

from typing import Any

from api.jobs.schemas import JobSummary


def usage(end: JobSummary, *, details: bool = True) -> dict[str, Any]:
    prompt, completion = end.usage.prompt_tokens or 0, end.usage.completion_tokens or 0
    counts: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if details:
        # OpenAI's breakdowns (cached, reasoning tokens...): null, as vLLM's server sends them
        # in a whole answer (its stream's usage chunk leaves them out).
        counts |= {"prompt_tokens_details": None, "completion_tokens_details": None}
    return counts


def usage_of_choices(ends: list[JobSummary], *, details: bool = True) -> dict[str, Any]:
    """One request's usage over its choices: the prompt once (as vLLM counts it for `n`), the
    completions of all."""
    counts = usage(ends[0], details=details)
    counts["completion_tokens"] = sum(end.usage.completion_tokens or 0 for end in ends)
    counts["total_tokens"] = counts["prompt_tokens"] + counts["completion_tokens"]
    return counts

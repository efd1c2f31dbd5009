"""Turns job rows into the public shapes of the API."""

from collections.abc import Mapping
from typing import Any

from api.jobs.schemas import JobLinks, JobPublic, JobSummary, Usage
from api.jobs.waiting import QueueWait
from vqueue.contract import logprobs
from vqueue.contract.tools import ToolCalls, ToolUse, calls_json


def usage_of(row: Mapping[Any, Any]) -> Usage:
    prompt, completion = row["prompt_tokens"], row["completion_tokens"]
    total = None if prompt is None or completion is None else prompt + completion
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)


def job_summary(row: Mapping[Any, Any]) -> JobSummary:
    """Needs only db.attempts.SUMMARY_COLUMNS of the row: a row read from Postgres, or the
    summary a worker's END entry carries (JSON, where dates and ids are strings)."""
    return JobSummary(**_summary_fields(row))


def _summary_fields(row: Mapping[Any, Any]) -> dict[str, Any]:
    job_id = str(row["id"])
    return {
        "id": row["id"],
        "status": row["status"],
        "priority": row["priority"],
        "timeout_s": row["timeout_s"],
        "expires_at": row["expires_at"],
        "deadline_at": row.get("deadline_at"),
        "cancel_requested_at": row["cancel_requested_at"],
        "model": row["model"],
        "attempt": row["attempt"],
        "finish_reason": row["finish_reason"],
        "error": row["error"],
        "usage": usage_of(row),
        "created_at": row["created_at"],
        "started_at": row["started_at"],
        "first_token_at": row["first_token_at"],
        "finished_at": row["finished_at"],
        "batch_id": row["batch_id"],
        "custom_id": row["custom_id"],
        "metadata": row["metadata"],
        "links": JobLinks(
            self=f"/jobs/{job_id}",
            stream=f"/jobs/{job_id}/stream",
            cancel=f"/jobs/{job_id}/cancel",
        ),
    }


def token_logprobs(value: str | None) -> list[dict[str, Any]] | None:
    """A job's log probabilities (vqueue/contract/logprobs.py) as the jobs API shows them."""
    if not value:
        return None
    return [
        {
            "token": candidates[0][0],
            "logprob": candidates[0][1],
            "offset": offset,
            "top_logprobs": [{"token": token, "logprob": lp} for token, lp in candidates],
        }
        for offset, candidates in logprobs.decode(value)
    ]


def job_public(
    row: Mapping[Any, Any], text: str | None = None, queue: QueueWait | None = None
) -> JobPublic:
    """The whole job: its summary, its input, its text (`text`, or the row's), the log
    probabilities of its tokens (once it ended, where asked for) and, while it is queued,
    its wait (`queue`)."""
    # Validated once, as the whole job (the summary is a part of it).
    return JobPublic(
        **_summary_fields(row),
        prompt=row["prompt"],
        messages=row["messages"],
        prompt_token_ids=row["prompt_token_ids"],
        params=row["params"],
        text=row["text"] if text is None else text,
        logprobs=token_logprobs(row["logprobs"]),
        queue=queue,
        webhook=row.get("webhook"),
        **_tool_fields(row),
    )


def _tool_fields(row: Mapping[Any, Any]) -> dict[str, Any]:
    use = ToolUse.from_stored(row["tools"])
    if use is None:
        return {}
    choice = {"type": "function", "function": {"name": use.choice}} if use.named else use.choice
    read = ToolCalls.decode(row["tool_calls"]) if row["tool_calls"] else None
    return {
        "tools": use.tools,
        "tool_choice": choice,
        "tool_calls": None if read is None else calls_json(read.calls),
    }

"""Turns job rows into the public shapes of the API."""

from collections.abc import Mapping
from typing import Any

from api.jobs.schemas import JobLinks, JobPublic, Usage


def usage_of(row: Mapping[Any, Any]) -> Usage:
    prompt, completion = row["prompt_tokens"], row["completion_tokens"]
    total = None if prompt is None or completion is None else prompt + completion
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)


def job_public(row: Mapping[Any, Any], text: str | None = None) -> JobPublic:
    job_id = str(row["id"])
    return JobPublic(
        id=row["id"],
        status=row["status"],
        priority=row["priority"],
        timeout_s=row["timeout_s"],
        expires_at=row["expires_at"],
        cancel_requested_at=row["cancel_requested_at"],
        model=row["model"],
        prompt=row["prompt"],
        messages=row["messages"],
        prompt_token_ids=row.get("prompt_token_ids"),
        params=row["params"],
        attempt=row["attempt"],
        text=row["text"] if text is None else text,
        finish_reason=row["finish_reason"],
        error=row["error"],
        usage=usage_of(row),
        created_at=row["created_at"],
        started_at=row["started_at"],
        first_token_at=row["first_token_at"],
        finished_at=row["finished_at"],
        batch_id=row["batch_id"],
        custom_id=row["custom_id"],
        metadata=row["metadata"],
        links=JobLinks(
            self=f"/jobs/{job_id}",
            stream=f"/jobs/{job_id}/stream",
            cancel=f"/jobs/{job_id}/cancel",
        ),
    )


# Not in a stream's final summary: the job's input, and the text the stream already sent.
_NOT_SUMMED: dict[str, Any] = {
    "text": None,
    "prompt": None,
    "messages": None,
    "prompt_token_ids": None,
    "params": {},
}


def job_summary(row: Mapping[Any, Any]) -> dict[str, Any]:
    """The final state sent at the end of a stream: everything but the (already streamed) text
    and the input. Needs only db.attempts.SUMMARY_COLUMNS of the row (what a worker's END entry
    carries), as strings where the row has dates and ids."""
    return job_public({**row, **_NOT_SUMMED}).model_dump(mode="json", exclude=set(_NOT_SUMMED))

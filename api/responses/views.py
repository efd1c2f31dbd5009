"""A response's job as OpenAI's Response object: its id, status, output message and usage.

The response id is `resp_` and the job's id in hex, the output message's `msg_` and the same:
a response is found again from any API process by its id alone.
"""

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from api.jobs.schemas import JobSummary
from api.jobs.views import job_summary
from api.openai.errors import OpenAIError
from api.openai.tool_views import ToolReply
from api.openai.views import failure
from api.responses.tools import function_call_item
from db.states import JobStatus
from vqueue.contract.tools import ToolCall, ToolUse

RESPONSE_PREFIX = "resp_"


def response_id(job_id: uuid.UUID | str) -> str:
    return RESPONSE_PREFIX + uuid.UUID(str(job_id)).hex


def message_id(job_id: uuid.UUID | str) -> str:
    return "msg_" + uuid.UUID(str(job_id)).hex


def job_id_of(value: str, param: str = "response_id") -> uuid.UUID:
    """The job of a response id; 404 for anything that is not one."""
    try:
        if not value.startswith(RESPONSE_PREFIX):
            raise ValueError(value)
        return uuid.UUID(hex=value.removeprefix(RESPONSE_PREFIX))
    except ValueError:
        raise OpenAIError(404, f"no response {value!r}", param=param) from None


def _epoch(moment: datetime | str | None) -> int | None:
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return int(moment.timestamp())


def status_of(status: str, finish_reason: str | None) -> str:
    """The Response status a job's state stands for."""
    if status == JobStatus.QUEUED:
        return "queued"
    if status == JobStatus.RUNNING:
        return "in_progress"
    if status == JobStatus.SUCCEEDED:
        return "incomplete" if finish_reason == "length" else "completed"
    if status == JobStatus.CANCELLED:
        return "cancelled"
    return "failed"  # failed, or expired: never started in time


def error_of(summary: JobSummary) -> dict[str, str] | None:
    if summary.status not in (JobStatus.FAILED, JobStatus.EXPIRED):
        return None
    error = failure(summary)
    if summary.status == JobStatus.EXPIRED:
        code = "expired"
    else:
        code = "invalid_prompt" if error.status_code < 500 else "server_error"
    return {"code": code, "message": error.message}


def output_message(job_id: uuid.UUID | str, text: str, status: str) -> dict[str, Any]:
    return {
        "id": message_id(job_id),
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [output_text(text)] if status != "in_progress" else [],
    }


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def usage(prompt_tokens: int | None, completion_tokens: int | None) -> dict[str, Any] | None:
    if prompt_tokens is None and completion_tokens is None:
        return None
    given, made = prompt_tokens or 0, completion_tokens or 0
    return {
        "input_tokens": given,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": made,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": given + made,
    }


def response_object(
    row: Mapping[str, Any],
    *,
    summary: JobSummary | None = None,
    text: str | None = None,
    tool_calls: str | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    """The Response object of a job: from its row, or, at the end of a stream, its final
    `summary`, `text` and `tool_calls`; `status` overrides the job's where a stream reports
    a step."""
    echoed: dict[str, Any] = row["response"] or {}
    summary = summary or job_summary(row)
    shown = status or status_of(summary.status, summary.finish_reason)
    text = text if text is not None else row.get("text")
    calls: list[ToolCall] = []
    use = ToolUse.from_stored(row.get("tools"))
    if use is not None and use.reads_calls and JobStatus(summary.status).is_terminal:
        content, calls = ToolReply(use).read(text or "", tool_calls or row.get("tool_calls"))
        text = content or ""
    output = []
    if text:
        item_status = "completed" if shown == "completed" else "incomplete"
        output.append(output_message(row["id"], text, item_status))
    output += [function_call_item(call) for call in calls]
    spent = usage(summary.usage.prompt_tokens, summary.usage.completion_tokens)
    details = {"reason": "max_output_tokens"} if shown == "incomplete" else None
    return {
        "id": response_id(row["id"]),
        "object": "response",
        "created_at": _epoch(row["created_at"]),
        "completed_at": _epoch(summary.finished_at) if shown == "completed" else None,
        "status": shown,
        "background": echoed.get("background", False),
        "error": error_of(summary),
        "incomplete_details": details,
        "instructions": echoed.get("instructions"),
        "max_output_tokens": echoed.get("max_output_tokens"),
        "model": row["model"],
        "output": output,
        "parallel_tool_calls": echoed.get("parallel_tool_calls", True),
        "previous_response_id": echoed.get("previous_response_id"),
        "reasoning": echoed.get("reasoning") or {"effort": None, "summary": None},
        "service_tier": echoed.get("service_tier", "default"),
        "store": echoed.get("store", True),
        "temperature": echoed.get("temperature"),
        "text": echoed.get("text") or {"format": {"type": "text"}},
        "tool_choice": echoed.get("tool_choice", "auto"),
        "tools": echoed.get("tools") or [],
        "top_p": echoed.get("top_p"),
        "truncation": echoed.get("truncation", "disabled"),
        "usage": spent,
        "user": echoed.get("user"),
        "metadata": echoed.get("metadata") or {},
    }

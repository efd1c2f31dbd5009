"""OpenAI file ids and objects: uploaded batch input files (kept in Postgres) and each OpenAI
batch's output and error files (generated from its jobs when read, a line each)."""

import uuid
from collections.abc import Mapping
from typing import Any

from api.batches.service import load_batch
from api.core.callers import Caller
from api.core.resources import Resources, first_row
from api.core.wire_json import line_safe_json
from api.jobs.follower import Final
from api.jobs.views import job_summary
from api.openai.errors import OpenAIError
from api.openai.views import Reply, failure
from db.files import get_file
from db.states import JobStatus

OUTPUT, ERRORS = "output", "errors"


def file_id(file_uuid: uuid.UUID, kind: str | None = None) -> str:
    return f"file-{file_uuid.hex}" + (f"-{kind}" if kind else "")


def parse_file_id(value: str) -> tuple[uuid.UUID, str | None]:
    """(uuid, None) for an uploaded file; (batch uuid, "output"/"errors") for a batch's."""
    rest = value.removeprefix("file-")
    hex_part, _, kind = rest.partition("-")
    try:
        if rest == value or kind not in ("", OUTPUT, ERRORS):
            raise ValueError
        return uuid.UUID(hex=hex_part), kind or None
    except ValueError:
        raise OpenAIError(404, f"no file {value!r}", param="file_id") from None


def parse_openai_batch_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(hex=value.removeprefix("batch_"))
    except ValueError:
        raise OpenAIError(404, f"no batch {value!r}", param="batch_id") from None


def file_object(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": file_id(row["id"]),
        "object": "file",
        "bytes": row["bytes"],
        "created_at": int(row["created_at"].timestamp()),
        "filename": row["filename"],
        "purpose": row["purpose"],
        "status": "processed",
    }


async def stored_file(resources: Resources, caller: Caller, file_uuid: uuid.UUID, name: str) -> Any:
    row = await first_row(resources.db, get_file(file_uuid, caller.scope))
    if row is None:
        raise OpenAIError(404, f"no file {name!r}", param="file_id")
    return row


async def openai_batch_row(
    resources: Resources, caller: Caller, batch_uuid: uuid.UUID, name: str
) -> Any:
    row = await load_batch(resources, batch_uuid, caller)
    if row is None or not (row["metadata"] or {}).get("openai"):
        raise OpenAIError(404, f"no batch {name!r}", param="batch_id")
    return row


def batch_output_line(row: Mapping[Any, Any], endpoint: str, model: str) -> bytes:
    """One line of a batch's output file (succeeded jobs) or error file (the others)."""
    line: dict[str, Any] = {"id": f"batch_req_{row['id'].hex}", "custom_id": row["custom_id"]}
    if row["status"] == JobStatus.SUCCEEDED:
        end = Final(job_summary(row), row["text"], row["logprobs"] or "", "", row["tool_calls"])
        body = Reply(endpoint, row, model).whole_choices([end])
        line["response"] = {"status_code": 200, "request_id": str(row["id"]), "body": body}
        line["error"] = None
    else:
        error = failure(job_summary(row))
        line["response"] = {
            "status_code": error.status_code,
            "request_id": str(row["id"]),
            "body": error.body(),
        }
        line["error"] = {"code": error.code or error.type, "message": error.message}
    return line_safe_json(line, newline=True)

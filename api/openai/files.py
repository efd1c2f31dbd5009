"""OpenAI file ids and objects: uploaded batch input files (kept in Postgres) and each OpenAI
batch's output and error files (generated from its jobs when read)."""

import uuid
from collections.abc import Mapping
from typing import Any

from api.batches.service import load_batch
from api.core.callers import Caller
from api.core.resources import Resources, first_row
from api.openai.errors import OpenAIError
from db.files import get_file

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

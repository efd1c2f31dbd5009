"""OpenAI's Batch object, from a batch row and its jobs' tally."""

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from api.batches.views import Tally
from api.openai.files import ERRORS, OUTPUT, file_id
from db.states import BatchStatus, JobStatus


def batch_object(row: Mapping[str, Any], tally: Tally) -> dict[str, Any]:
    openai = row["metadata"]["openai"]
    status = BatchStatus(row["status"])
    unfinished = (JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED)
    failed = sum(tally.get(job_status, 0) for job_status in unfinished)

    def at(value: Any) -> int | None:
        return None if value is None else int(value.timestamp())

    finished = row["finished_at"]
    return {
        "id": f"batch_{row['id'].hex}",
        "object": "batch",
        "endpoint": openai["endpoint"],
        "errors": None,
        "input_file_id": openai["input_file_id"],
        "completion_window": openai["completion_window"],
        "status": status.value,
        "output_file_id": file_id(row["id"], OUTPUT),
        "error_file_id": file_id(row["id"], ERRORS) if failed else None,
        "created_at": at(row["created_at"]),
        "in_progress_at": at(row["started_at"]),
        "expires_at": at(row["created_at"] + timedelta(hours=24)),
        "finalizing_at": None,
        "completed_at": at(finished) if status == BatchStatus.COMPLETED else None,
        "failed_at": at(finished) if status == BatchStatus.FAILED else None,
        "expired_at": None,
        "cancelling_at": at(row["cancel_requested_at"]),
        "cancelled_at": at(finished) if status == BatchStatus.CANCELLED else None,
        "request_counts": {
            "total": row["total"],
            "completed": tally.get(JobStatus.SUCCEEDED, 0),
            "failed": failed,
        },
        "metadata": openai["metadata"],
    }

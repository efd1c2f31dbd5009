"""`/v1/batches` with metadata {"dry_run": "true"}: the input file checked, counted and
estimated as POST /batches?dry_run=true does (api/batches/dry_run.py), nothing stored.

The answer is OpenAI's Batch object, so that the openai SDK reads it as it reads any batch:
`status` is `completed` when every line would run and `failed` otherwise, `errors.data` lists
the bad lines (`code`, `line`, `message`) as OpenAI lists a refused file's, `request_counts`
counts the lines, and the counts and the estimate are added to `metadata` as strings (a
Batch's metadata values are strings). Its id names no stored batch.
"""

import time
import uuid
from typing import Any

from api.batches.dry_run import BatchDryRun

DRY_RUN_KEY = "dry_run"


def wants_dry_run(metadata: dict[str, str] | None) -> bool:
    return (metadata or {}).get(DRY_RUN_KEY, "").lower() == "true"


def _figures(found: BatchDryRun) -> dict[str, str]:
    figures = {
        "prompt_tokens": "" if found.prompt_tokens is None else str(found.prompt_tokens),
        "max_output_tokens": str(found.max_output_tokens),
    }
    if found.estimate is None:
        figures["estimate_unavailable"] = found.estimate_unavailable or ""
        return figures
    estimate = found.estimate
    figures |= {
        "estimated_output_tokens_per_s": str(estimate.output_tokens_per_s),
        "estimated_gpu_seconds": str(estimate.gpu_seconds),
        "estimated_start_by": estimate.start_by.isoformat(),
        "estimated_finish_by": estimate.finish_by.isoformat(),
    }
    return figures


def dry_run_batch(
    found: BatchDryRun,
    endpoint: str,
    input_file_id: str,
    completion_window: str,
    metadata: dict[str, str] | None,
) -> dict[str, Any]:
    now = int(time.time())
    errors = [
        {"code": "invalid_request", "line": error.line, "message": error.message, "param": None}
        for error in found.errors
    ]
    return {
        "id": f"batch_dry_run_{uuid.uuid4().hex}",
        "object": "batch",
        "endpoint": endpoint,
        "errors": {"object": "list", "data": errors} if errors else None,
        "input_file_id": input_file_id,
        "completion_window": completion_window,
        "status": "failed" if found.invalid else "completed",
        "output_file_id": None,
        "error_file_id": None,
        "created_at": now,
        "in_progress_at": None,
        "expires_at": None,
        "finalizing_at": None,
        "completed_at": None if found.invalid else now,
        "failed_at": now if found.invalid else None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": None,
        "request_counts": {
            "total": found.lines,
            "completed": found.valid,
            "failed": found.invalid,
        },
        "metadata": {**(metadata or {}), **_figures(found)},
    }

"""Logging for the API and workers: JSON lines when stderr is not a terminal, with the job id
on every line about a job; readable text on a terminal.

The job id comes from `job_context()` (set around a job's run in the worker), else from the
`job_id` a call passes in `extra`, else from the project's message convention "job %s: ...".
"""

import contextvars
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson

current_job: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)


@contextmanager
def job_context(job_id: str) -> Iterator[None]:
    token = current_job.set(job_id)
    try:
        yield
    finally:
        current_job.reset(token)


STRUCTURED_FIELDS = ("intake",)


class JobIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            job_id = current_job.get()
            if job_id is None and isinstance(record.msg, str) and record.msg.startswith("job %s"):
                args = record.args if isinstance(record.args, tuple) else ()
                job_id = str(args[0]) if args else None
            record.job_id = job_id
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        # Structured fields a reader parses (e.g. a worker's `intake` timings for the bench).
        for key in STRUCTURED_FIELDS:
            if (value := getattr(record, key, None)) is not None:
                line[key] = value
        if getattr(record, "job_id", None):
            line["job_id"] = getattr(record, "job_id")  # noqa: B009
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")


def configure_logging(log_format: str = "auto", level: int = logging.INFO) -> None:
    """One stderr handler on the root logger (idempotent: a second call replaces it)."""
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    handler.addFilter(JobIdFilter())
    handler.set_name("vqueue")
    root = logging.getLogger()
    for existing in [h for h in root.handlers if h.get_name() == "vqueue"]:
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)

"""Logging for the API and workers: JSON lines when stderr is not a terminal, with the job id
on every line about a job; readable text on a terminal.

The job id comes from `job_context()` (set around a job's run in the worker), else from the
`job_id` a call passes in `extra`, else from the project's message convention "job %s: ...".

A logging call only queues its record; one thread formats and writes the lines. Written by
the caller, every line was a write to stderr that gave up the GIL and then waited for it
behind the process's busy threads: the per-job lines of a large message, written by its task
thread, took several times as long as the work of taking the message in.
"""

import contextvars
import copy
import logging
import os
import queue
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from logging.handlers import QueueHandler, QueueListener
from typing import Any, TextIO

import orjson

current_job: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)


@contextmanager
def job_context(job_id: str) -> Iterator[None]:
    token = current_job.set(job_id)
    try:
        yield
    finally:
        current_job.reset(token)


# The structured events a line may carry (vqueue/contract/phases.py).
STRUCTURED_FIELDS = ("phase",)


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
        elif record.exc_text:  # formatted before it was queued
            line["exception"] = record.exc_text
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")


class QueuedLines(QueueHandler):
    """Queues each record for the writer thread, with what can only be read in the calling
    thread already read: the job id (from its context), the message with its arguments (which
    the caller may change afterwards) and the exception's traceback."""

    def __init__(self, writer: logging.Handler) -> None:
        super().__init__(queue.SimpleQueue())
        self.writer = writer
        self.listener = QueueListener(self.queue, writer)
        self.writing = False
        self.addFilter(JobIdFilter())

    def start(self) -> None:
        self.listener.start()
        self.writing = True

    def emit(self, record: logging.LogRecord) -> None:
        # Closed while still attached: logging.config.dictConfig shuts every handler down,
        # and vLLM calls it as its engine starts. The lines go on, through a new thread.
        if not self.writing and not self._resume():
            self.writer.handle(record)  # the interpreter is going away: written here
            return
        super().emit(record)

    def _resume(self) -> bool:
        try:
            self.start()
        except RuntimeError:  # no new threads at interpreter shutdown
            return False
        return True

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record = copy.copy(record)
        record.msg = record.getMessage()
        record.args = None
        if record.exc_info:
            record.exc_text = record.exc_text or _TRACEBACKS.formatException(record.exc_info)
            record.exc_info = None
        return record

    def close(self) -> None:
        # logging.shutdown() (at exit, and before the worker's os._exit) lands here: the
        # lines still queued are written before the process goes.
        if self.writing:
            self.writing = False
            self.listener.stop()
        super().close()


_TRACEBACKS = logging.Formatter()


def configure_logging(
    log_format: str = "auto",
    level: int = logging.INFO,
    stream: TextIO | None = None,
    queued: bool = True,
) -> None:
    """One writer to `stream` (stderr) for the root logger, behind a queue unless `queued`
    is false (idempotent: a second call replaces it, once what the first one queued is
    written)."""
    stream = stream or sys.stderr
    use_json = log_format == "json" or (log_format == "auto" and not stream.isatty())
    writer = logging.StreamHandler(stream)
    writer.setFormatter(JsonFormatter() if use_json else TextFormatter())
    writer.addFilter(JobIdFilter())
    handler = QueuedLines(writer) if queued else writer
    handler.set_name("vqueue")
    root = logging.getLogger()
    for existing in [h for h in root.handlers if h.get_name() == "vqueue"]:
        root.removeHandler(existing)
        existing.close()
    root.addHandler(handler)
    root.setLevel(level)
    if isinstance(handler, QueuedLines):
        handler.start()


def _write_directly_after_fork() -> None:
    """A forked child has no writer thread: its lines go straight to the writer instead of
    into a queue that nobody reads."""
    root = logging.getLogger()
    for queued in [h for h in root.handlers if isinstance(h, QueuedLines)]:
        root.removeHandler(queued)
        queued.writer.set_name("vqueue")
        root.addHandler(queued.writer)


os.register_at_fork(after_in_child=_write_directly_after_fork)

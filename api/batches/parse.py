"""Reading an uploaded batch file into validated job inputs, with bad lines named by number.

Four formats: JSONL of prompt/messages objects, OpenAI's batch input lines, CSV with a
`prompt` column, and plain text with one prompt per line. Runs in a worker thread: it is
CPU work over a file of up to VQUEUE_MAX_BATCH_BYTES.
"""

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import PurePosixPath
from typing import IO, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.jobs.messages import Identifier
from api.jobs.schemas import JobSpec, Metadata
from api.openai.requests import OpenAIFieldError, job_fields

# Errors listed in a refusal or kept on a batch; the rest are counted.
MAX_REPORTED_ERRORS = 100


class BatchFormat(StrEnum):
    JSONL = "jsonl"
    OPENAI = "openai"
    CSV = "csv"
    TEXT = "text"


_BY_SUFFIX = {
    ".jsonl": BatchFormat.JSONL,
    ".ndjson": BatchFormat.JSONL,
    ".csv": BatchFormat.CSV,
    ".txt": BatchFormat.TEXT,
}
_BY_TYPE = {
    "application/jsonl": BatchFormat.JSONL,
    "application/x-jsonlines": BatchFormat.JSONL,
    "application/x-ndjson": BatchFormat.JSONL,
    "application/json-lines": BatchFormat.JSONL,
    "text/csv": BatchFormat.CSV,
    "text/plain": BatchFormat.TEXT,
}


class BatchLine(JobSpec):
    """One job of a batch: its input, sampling and the caller's id and metadata."""

    custom_id: Identifier | None = None
    metadata: Metadata | None = None


class OpenAIBatchLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    custom_id: Identifier
    method: str = Field(pattern="^POST$")
    url: str
    body: dict[str, Any]


@dataclass
class ParsedLine:
    line: int
    job: BatchLine


@dataclass
class LineError:
    line: int
    message: str


@dataclass
class ParsedBatch:
    jobs: list[ParsedLine] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    bad_lines: int = 0

    def refuse(self, line: int, message: str) -> None:
        self.bad_lines += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(LineError(line, message))


class TooManyJobsError(ValueError):
    pass


class NoPromptColumnError(ValueError):
    pass


def detect_format(
    requested: BatchFormat | None, content_type: str | None, filename: str | None
) -> BatchFormat | None:
    """The format asked for, else the file name's suffix, else the content type."""
    if requested is not None:
        return requested
    if filename and (found := _BY_SUFFIX.get(PurePosixPath(filename).suffix.lower())):
        return found
    media_type = (content_type or "").split(";")[0].strip().lower()
    return _BY_TYPE.get(media_type)


def _lines(file: IO[bytes], max_line_bytes: int) -> Iterator[tuple[int, str | None, str]]:
    """(line number, text or None when unreadable, why) for each physical line."""
    for number, raw in enumerate(file, start=1):
        if len(raw) > max_line_bytes:
            yield number, None, f"is {len(raw)} bytes long, over the limit of {max_line_bytes}"
            continue
        try:
            yield number, raw.decode("utf-8"), ""
        except UnicodeDecodeError as exc:
            yield number, None, f"is not valid UTF-8 (byte {exc.start})"


def _describe(exc: ValidationError, prefix: str = "") -> str:
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"])
        parts.append(f"{prefix}{where}: {error['msg']}" if where else error["msg"])
    return "; ".join(parts)


class _Reader:
    def __init__(
        self,
        defaults: dict[str, Any],
        openai_endpoint: str | None,
        served_models: set[str],
        max_jobs: int,
        max_line_bytes: int,
    ) -> None:
        self.defaults = defaults
        self.openai_endpoint = openai_endpoint
        self.served_models = served_models
        self.max_jobs = max_jobs
        self.max_line_bytes = max_line_bytes
        self.result = ParsedBatch()
        self._seen_ids: dict[str, int] = {}

    def add(self, line: int, fields: dict[str, Any], prefix: str = "") -> None:
        try:
            job = BatchLine.model_validate({**self.defaults, **fields})
        except ValidationError as exc:
            self.result.refuse(line, _describe(exc, prefix))
            return
        if job.custom_id is None:
            job.custom_id = str(line)
        if (first := self._seen_ids.setdefault(job.custom_id, line)) != line:
            self.result.refuse(line, f"custom_id {job.custom_id!r} is already used on line {first}")
            return
        if len(self.result.jobs) >= self.max_jobs:
            raise TooManyJobsError(f"the file holds more than {self.max_jobs} prompts")
        self.result.jobs.append(ParsedLine(line, job))

    def json_lines(self, file: IO[bytes], openai: bool) -> None:
        for line, text, why in _lines(file, self.max_line_bytes):
            if text is None:
                self.result.refuse(line, why)
                continue
            if not text.strip():
                continue
            try:
                value = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                self.result.refuse(line, f"is not valid JSON: {exc}")
                continue
            if not isinstance(value, dict):
                self.result.refuse(line, "must be a JSON object")
            elif openai:
                self._openai_line(line, value)
            else:
                self.add(line, value)

    def _openai_line(self, line: int, value: dict[str, Any]) -> None:
        try:
            request = OpenAIBatchLine.model_validate(value)
            if self.openai_endpoint and request.url != self.openai_endpoint:
                self.result.refuse(
                    line, f"url: must be the batch's endpoint {self.openai_endpoint}"
                )
                return
            fields = job_fields(request.url, request.body, self.served_models)
        except ValidationError as exc:
            self.result.refuse(line, _describe(exc))
            return
        except OpenAIFieldError as exc:
            self.result.refuse(line, f"body.{exc.param}: {exc.message}")
            return
        self.add(line, {**fields, "custom_id": request.custom_id}, prefix="body.")

    def csv_rows(self, file: IO[bytes]) -> None:
        bad: dict[int, str] = {}

        def text_lines() -> Iterator[str]:
            for line, text, why in _lines(file, self.max_line_bytes):
                if text is None:
                    bad[line] = why
                    text = "\n"
                yield text

        reader = csv.reader(text_lines(), strict=True)
        try:
            header = next(reader, None)
        except csv.Error as exc:
            raise NoPromptColumnError(f"the CSV header cannot be read: {exc}") from None
        if header is None or "prompt" not in header:
            raise NoPromptColumnError(
                "the CSV file needs a header row with a 'prompt' column"
                + (f"; its columns are {', '.join(header)}" if header else "")
            )
        prompt_at = header.index("prompt")
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                self.result.refuse(start, f"is not valid CSV: {exc}")
                continue
            if start in bad:
                self.result.refuse(start, bad.pop(start))
                continue
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                self.result.refuse(start, f"has {len(row)} columns; the header has {len(header)}")
                continue
            record = dict(zip(header, row, strict=True))
            fields: dict[str, Any] = {"prompt": row[prompt_at]}
            if record.get("custom_id"):
                fields["custom_id"] = record["custom_id"]
            extra = {k: v for k, v in record.items() if k not in ("prompt", "custom_id")}
            if extra:
                fields["metadata"] = extra
            self.add(start, fields)

    def text_lines(self, file: IO[bytes]) -> None:
        for line, text, why in _lines(file, self.max_line_bytes):
            if text is None:
                self.result.refuse(line, why)
                continue
            prompt = text.rstrip("\r\n")
            if prompt.strip():
                self.add(line, {"prompt": prompt})


def sniff_openai(file: IO[bytes]) -> bool:
    """Whether a JSONL file's first object is an OpenAI batch request line."""
    position = file.tell()
    try:
        for raw in file:
            if raw.strip():
                try:
                    first = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    return False
                return isinstance(first, dict) and "body" in first and "url" in first
        return False
    finally:
        file.seek(position)


def parse_batch(
    file: IO[bytes],
    batch_format: BatchFormat,
    defaults: dict[str, Any],
    *,
    served_models: set[str],
    max_jobs: int,
    max_line_bytes: int,
    openai_endpoint: str | None = None,
) -> ParsedBatch:
    """Every valid line as a job, and the bad ones by line number (first 100 kept).
    `openai_endpoint`: the url every OpenAI line must name (a /v1/batches batch's endpoint)."""
    reader = _Reader(defaults, openai_endpoint, served_models, max_jobs, max_line_bytes)
    file.seek(0)
    if batch_format is BatchFormat.CSV:
        csv.field_size_limit(max_line_bytes)
        reader.csv_rows(file)
    elif batch_format is BatchFormat.TEXT:
        reader.text_lines(file)
    else:
        reader.json_lines(file, openai=batch_format is BatchFormat.OPENAI)
    return reader.result

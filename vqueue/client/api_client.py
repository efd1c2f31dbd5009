"""A small HTTP client of the vqueue API (submit, poll, stream), used by the demo and the tests."""

import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson


@dataclass(frozen=True, slots=True)
class ServerEvent:
    event: str
    data: Any
    id: str | None = None


_SSE_LINE_END = re.compile(rb"\r\n|\r|\n")


def sse_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """A body's lines as Server-Sent Events frame them: ended by CRLF, LF or CR only, never
    at the other Unicode line breaks that `str.splitlines` (and so httpx's `iter_lines`)
    also splits at, which a model's text may hold."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        # A CR that ends a chunk may be the first half of a CRLF split across two chunks.
        held = b"\r" if pending.endswith(b"\r") else b""
        parts = _SSE_LINE_END.split(pending[: len(pending) - len(held)])
        pending = parts.pop() + held
        yield from (part.decode() for part in parts)
    yield from (part.decode() for part in _SSE_LINE_END.split(pending)[:-1])


def parse_sse(lines: Iterable[str]) -> Iterator[ServerEvent]:
    """Server-Sent Events from decoded lines; comments and retry hints are skipped."""
    event, event_id = "message", None
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield ServerEvent(event, orjson.loads("\n".join(data)), event_id)
            event, data, event_id = "message", [], None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            event_id = value


JOB_FINAL = frozenset({"succeeded", "failed", "cancelled", "expired"})
BATCH_FINAL = frozenset({"completed", "failed", "cancelled"})


def _poll(
    fetch: Callable[[], dict[str, Any]],
    final: frozenset[str],
    what: str,
    timeout: float,
    interval: float,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = fetch()
        if found["status"] in final:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} still {found['status']} after {timeout}s")
        time.sleep(interval)


class VQueueClient:
    def __init__(self, base_url: str, timeout: float = 30.0, api_key: str | None = None) -> None:
        # Like OpenAI's client: the key from the environment unless given.
        api_key = api_key or os.environ.get("VQUEUE_API_KEY")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url, timeout=timeout, headers=headers)

    def submit(self, **body: Any) -> dict[str, Any]:
        response = self.http.post("/jobs", json=body)
        response.raise_for_status()
        job: dict[str, Any] = response.json()
        return job

    def get(self, job_id: str) -> dict[str, Any]:
        response = self.http.get(f"/jobs/{job_id}")
        response.raise_for_status()
        job: dict[str, Any] = response.json()
        return job

    def wait(self, job_id: str, timeout: float = 300.0, interval: float = 0.2) -> dict[str, Any]:
        """Poll until the job reaches a final state."""
        return _poll(lambda: self.get(job_id), JOB_FINAL, f"job {job_id}", timeout, interval)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Ask for the job to stop; its status is `cancelled` once queued, `running` until the
        worker stops it."""
        response = self.http.post(f"/jobs/{job_id}/cancel")
        response.raise_for_status()
        job: dict[str, Any] = response.json()
        return job

    def stream(self, job_id: str, last_event_id: str | int | None = None) -> Iterator[ServerEvent]:
        """The job's events until `done`; stop iterating to disconnect. `last_event_id`: the
        id of the last event had (`<attempt>-<offset>`), or an offset into the current
        attempt's text."""
        headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
        with self.http.stream(
            "GET", f"/jobs/{job_id}/stream", headers=headers, timeout=httpx.Timeout(30, read=None)
        ) as response:
            response.raise_for_status()
            for event in parse_sse(sse_lines(response.iter_bytes())):
                yield event
                if event.event == "done":
                    return

    def upload_batch(
        self,
        content: bytes,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """POST /batches: a multipart upload when a file name is given, else the raw body."""
        params = {key: value for key, value in options.items() if value is not None}
        if filename is not None:
            files = {"file": (filename, content, content_type or "application/octet-stream")}
            response = self.http.post("/batches", params=params, files=files)
        else:
            headers = {"Content-Type": content_type} if content_type else {}
            response = self.http.post("/batches", params=params, content=content, headers=headers)
        response.raise_for_status()
        batch: dict[str, Any] = response.json()
        return batch

    def batch(self, batch_id: str) -> dict[str, Any]:
        response = self.http.get(f"/batches/{batch_id}")
        response.raise_for_status()
        batch: dict[str, Any] = response.json()
        return batch

    def wait_batch(
        self, batch_id: str, timeout: float = 600.0, interval: float = 0.5
    ) -> dict[str, Any]:
        """Poll until the batch ends (completed, failed or cancelled)."""
        return _poll(
            lambda: self.batch(batch_id), BATCH_FINAL, f"batch {batch_id}", timeout, interval
        )

    def batch_results(self, batch_id: str, order: str = "input") -> list[dict[str, Any]]:
        response = self.http.get(f"/batches/{batch_id}/results", params={"order": order})
        response.raise_for_status()
        return [orjson.loads(line) for line in response.content.splitlines() if line]

    def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        response = self.http.post(f"/batches/{batch_id}/cancel")
        response.raise_for_status()
        batch: dict[str, Any] = response.json()
        return batch

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "VQueueClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

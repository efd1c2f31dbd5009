"""`make loadtest`: the load cases a shared queue must take without failing anyone.

Starts its own stack (the Makefile gives it its own database, Redis database, queue and port),
then runs, one after another, with the real engine:

- followers: N jobs, each followed by many SSE clients at once (1,000 in all by default);
- chats: concurrent streaming `/v1/chat/completions` requests (500);
- burst: `POST /jobs` all at once (5,000), then until every job ended.

A request fails if it gets anything but its success status, if a stream ends without its end
(`done` / `[DONE]`) or carries an error, or if a follower's text is not its job's. Error lines
in the stack's logs are counted too. Writes benchmarks/results/loadtest.md.
"""

import argparse
import asyncio
import os
import platform
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from redis import Redis

from benchmarks.workload import percentile
from db.migrate import reset_database
from vqueue.client.api_client import JOB_FINAL
from vqueue.dev import stack
from vqueue.settings import Settings, get_settings


@dataclass
class Case:
    name: str
    requests: int
    failed: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    what: str = ""  # what the latency is the time to
    notes: list[str] = field(default_factory=list)

    def fail(self, why: str) -> None:
        self.failed += 1
        if len(self.notes) < 5:
            self.notes.append(why)

    def percentile(self, p: float) -> str:
        value = percentile(self.latencies_ms, p)
        return "-" if value is None else f"{value:.0f}"


async def sse_events(response: aiohttp.ClientResponse) -> Any:
    """(event, data) pairs of a text/event-stream; `data` alone for OpenAI's unnamed events."""
    event, data = "message", list[str]()
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


async def submit(http: aiohttp.ClientSession, body: dict[str, Any]) -> tuple[int, Any]:
    async with http.post("/jobs", json=body) as response:
        return response.status, await response.json(content_type=None)


async def final_job(http: aiohttp.ClientSession, job_id: str) -> dict[str, Any]:
    while True:
        async with http.get(f"/jobs/{job_id}") as response:
            job: dict[str, Any] = await response.json()
        if job["status"] in JOB_FINAL:
            return job
        await asyncio.sleep(0.5)


async def followers(http: aiohttp.ClientSession, jobs: int, clients: int, tokens: int) -> Case:
    case = Case("SSE followers", clients, what="the job's end")
    ids = []
    for i in range(jobs):
        status, job = await submit(
            http, {"prompt": f"Story {i}:", "max_tokens": tokens, "ignore_eos": True}
        )
        assert status == 202, job
        ids.append(job["id"])
    texts: dict[str, list[str]] = {job_id: [] for job_id in ids}

    async def follow(job_id: str) -> None:
        started, text = time.monotonic(), ""
        try:
            async with http.get(f"/jobs/{job_id}/stream") as response:
                if response.status != 200:
                    return case.fail(f"HTTP {response.status}")
                async for event, data in sse_events(response):
                    if event == "delta":
                        text += orjson.loads(data)["text"]
                    elif event == "restart":
                        text = ""
                    elif event == "error":
                        return case.fail(f"error event: {data[:200]}")
                    elif event == "done":
                        case.latencies_ms.append((time.monotonic() - started) * 1000)
                        texts[job_id].append(text)
                        return None
            case.fail("the stream ended without done")
        except (aiohttp.ClientError, TimeoutError) as exc:
            case.fail(f"{type(exc).__name__}: {exc}")

    began = time.monotonic()
    await asyncio.gather(*(follow(ids[i % jobs]) for i in range(clients)))
    case.seconds = time.monotonic() - began
    for job_id in ids:
        job = await final_job(http, job_id)
        for text in texts[job_id]:
            if text != job["text"]:
                case.fail(f"{job_id}: a follower's text is not the job's")
    return case


async def chats(http: aiohttp.ClientSession, model: str, requests: int, tokens: int) -> Case:
    case = Case("streaming chat completions", requests, what="the first token")

    async def chat(i: int) -> None:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": f"Tell me about the number {i}."}],
            "max_tokens": tokens,
            "stream": True,
        }
        started, first = time.monotonic(), None
        try:
            async with http.post("/v1/chat/completions", json=body) as response:
                if response.status != 200:
                    return case.fail(f"HTTP {response.status}: {(await response.text())[:200]}")
                async for _, data in sse_events(response):
                    if data == "[DONE]":
                        if first is not None:
                            case.latencies_ms.append((first - started) * 1000)
                        return None
                    chunk = orjson.loads(data)
                    if "error" in chunk:
                        return case.fail(f"error chunk: {data[:200]}")
                    if first is None and any(
                        c["delta"].get("content") for c in chunk.get("choices", [])
                    ):
                        first = time.monotonic()
            case.fail("the stream ended without [DONE]")
        except (aiohttp.ClientError, TimeoutError) as exc:
            case.fail(f"{type(exc).__name__}: {exc}")

    began = time.monotonic()
    await asyncio.gather(*(chat(i) for i in range(requests)))
    case.seconds = time.monotonic() - began
    return case


async def burst(http: aiohttp.ClientSession, requests: int) -> Case:
    case = Case("POST /jobs burst", requests, what="the 202")
    ids: list[str] = []

    async def one(i: int) -> None:
        started = time.monotonic()
        try:
            status, job = await submit(http, {"prompt": f"Item {i}:", "max_tokens": 1})
        except (aiohttp.ClientError, TimeoutError) as exc:
            return case.fail(f"{type(exc).__name__}: {exc}")
        if status != 202:
            return case.fail(f"HTTP {status}: {str(job)[:200]}")
        case.latencies_ms.append((time.monotonic() - started) * 1000)
        ids.append(job["id"])
        return None

    began = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(requests)))
    accepted_s = time.monotonic() - began
    ended = await asyncio.gather(*(final_job(http, job_id) for job_id in ids))
    case.seconds = time.monotonic() - began
    for job in ended:
        if job["status"] != "succeeded":
            case.fail(f"job {job['id']} {job['status']}: {job['error']}")
    case.notes.insert(0, f"all accepted in {accepted_s:.1f}s, all ended in {case.seconds:.0f}s")
    return case


def error_lines(run_dir: Path, offsets: dict[str, int]) -> dict[str, int]:
    counts = {}
    for name, offset in offsets.items():
        with (run_dir / name).open("rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
        counts[name] = sum(
            '"level":"ERROR"' in line or '"level":"CRITICAL"' in line for line in text.splitlines()
        )
    return counts


def write_report(path: Path, cases: list[Case], errors: dict[str, int], command: str) -> None:
    lines = [
        "# Load test",
        "",
        f"Run of {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `{command}`: {os.cpu_count()} cores "
        f"({platform.machine()}), CPU engine, the default model. Every case "
        "ran against the real stack (API, worker, Postgres, Redis), one after another.",
        "",
        "| case | requests | failed | p50 ms | p99 ms | latency to | seconds | notes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {c.name} | {c.requests} | {c.failed} | {c.percentile(50)} | {c.percentile(99)} | "
        f"{c.what} | {c.seconds:.1f} | {'; '.join(c.notes) or '-'} |"
        for c in cases
    ]
    lines += [
        "",
        "Error lines in the stack's logs meanwhile: "
        + ", ".join(f"{name} {count}" for name, count in errors.items())
        + ".",
        "",
    ]
    path.write_text("\n".join(lines))


async def run_cases(settings: Settings, args: argparse.Namespace) -> list[Case]:
    headers = {"Authorization": f"Bearer {os.environ['VQUEUE_API_KEY']}"}
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=args.timeout_s)
    async with aiohttp.ClientSession(
        stack.base_url(settings), headers=headers, connector=connector, timeout=timeout
    ) as http:
        steps: list[Callable[[], Awaitable[Case]]] = [
            lambda: followers(http, args.follow_jobs, args.followers, args.tokens),
            lambda: chats(http, settings.model_name, args.chats, args.tokens),
            lambda: burst(http, args.burst),
        ]
        cases = []
        for step in steps:
            case = await step()
            cases.append(case)
            print(
                f"{case.name}: {case.requests} requests, {case.failed} failed, "
                f"{case.seconds:.1f}s; {'; '.join(case.notes)}",
                flush=True,
            )
        return cases


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadtest")
    parser.add_argument("--followers", type=int, default=1000)
    parser.add_argument("--follow-jobs", type=int, default=50)
    parser.add_argument("--chats", type=int, default=500)
    parser.add_argument("--burst", type=int, default=5000)
    parser.add_argument("--tokens", type=int, default=32, help="max_tokens of each generation")
    parser.add_argument("--timeout-s", type=float, default=1800)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/loadtest.md"))
    args = parser.parse_args()
    settings = get_settings()
    reset_database(settings.database_url)
    Redis.from_url(settings.redis_url).flushdb()
    os.environ["VQUEUE_API_KEY"] = stack.local_key(settings) or ""
    stack.up(settings)
    try:
        logs = ("api.log", "worker.log")
        offsets = {name: (settings.run_dir / name).stat().st_size for name in logs}
        cases = asyncio.run(run_cases(settings, args))
        errors = error_lines(settings.run_dir, offsets)
    finally:
        stack.down(settings)
    write_report(args.out, cases, errors, "make loadtest")
    print(args.out.read_text())


if __name__ == "__main__":
    main()

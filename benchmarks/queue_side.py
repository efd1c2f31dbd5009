"""The queue side: jobs through the public HTTP API, results over SSE (or polling).

The clients use aiohttp: on a 2-core machine httpx spent ~7 ms of CPU per request, which made
the load generator, not the API, the bottleneck (130 jobs/s with httpx, 1,600 with aiohttp).
"""

import asyncio
import multiprocessing
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

import aiohttp
import orjson

from benchmarks.workload import RunResult, Workload
from vqueue.gc_heap import GcPauses

JSON = {"content-type": "application/json"}


def auth_headers() -> dict[str, str]:
    """The key the benchmark made (VQUEUE_API_KEY), sent like any client's."""
    key = os.environ.get("VQUEUE_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


@asynccontextmanager
async def _session(base_url: str, connections: int) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(
        base_url, connector=connector, timeout=timeout, headers=auth_headers()
    ) as session:
        yield session


async def _submit(session: aiohttp.ClientSession, body: dict[str, Any]) -> str:
    async with session.post("/jobs", data=orjson.dumps(body), headers=JSON) as response:
        payload = await response.read()
        if response.status != 202:
            raise RuntimeError(f"submit answered {response.status}: {payload[:200]!r}")
    job_id: str = orjson.loads(payload)["id"]
    return job_id


class Followed(NamedTuple):
    text: str
    lags: list[float]  # tokens produced while the stream was open: the delivery path's lag
    received: list[float]  # time.time() at which each of `lags` arrived
    replay_lags: list[float]  # tokens produced before it opened, sent from the token log
    first: float | None  # perf_counter() at the first delta
    # time.time(): the last delta's production (by the worker), its arrival, the done event's.
    last_made: float
    last_received: float
    done_received: float


async def follow(session: aiohttp.ClientSession, job_id: str) -> Followed:
    """A job's stream, to its end."""
    parts: list[str] = []
    lags: list[float] = []
    received: list[float] = []
    replay_lags: list[float] = []
    first = None
    last_made = last_received = 0.0
    event = b""
    async with session.get(f"/jobs/{job_id}/stream") as response:
        response.raise_for_status()
        # A token made before this answer came could not be delivered live to this client.
        opened = time.time()
        async for raw in response.content:
            line = raw.rstrip(b"\n")
            if line.startswith(b"event: "):
                event = line[7:]
            elif line.startswith(b"data: "):
                if event == b"delta":
                    now = time.time()
                    data = orjson.loads(line[6:])
                    if first is None:
                        first = time.perf_counter()
                    parts.append(data["text"])
                    last_received = now
                    if produced := data.get("t"):
                        last_made = produced
                        if produced >= opened:
                            lags.append(now - produced)
                            received.append(now)
                        else:
                            replay_lags.append(now - produced)
                elif event == b"done":
                    done_received = time.time()
                    data = orjson.loads(line[6:])
                    if data["status"] != "succeeded":
                        raise RuntimeError(f"job {job_id} ended {data['status']}: {data}")
                    return Followed(
                        "".join(parts),
                        lags,
                        received,
                        replay_lags,
                        first,
                        last_made,
                        last_received,
                        done_received,
                    )
    raise RuntimeError(f"the stream of {job_id} ended without a done event")


async def run_streamed(base_url: str, prompts: list[str], workload: Workload) -> RunResult:
    """Submit every prompt at once; each client follows its job's SSE stream to the end."""
    pauses = GcPauses().install()
    try:
        return await _run_streamed(base_url, prompts, workload, pauses)
    finally:
        pauses.uninstall()


async def _run_streamed(
    base_url: str, prompts: list[str], workload: Workload, pauses: GcPauses
) -> RunResult:
    async with _session(base_url, 2 * len(prompts) + 8) as session:
        started, started_at = time.perf_counter(), time.time()

        async def one(prompt: str) -> tuple[float, Followed]:
            sent = time.perf_counter()
            job_id = await _submit(session, {"prompt": prompt, **workload.sampling()})
            followed = await follow(session, job_id)
            assert followed.first is not None
            return followed.first - sent, followed

        results = await asyncio.gather(*(one(prompt) for prompt in prompts))
        seconds = time.perf_counter() - started
    return RunResult(
        len(prompts),
        len(prompts) * workload.output_tokens,
        seconds,
        [ttft for ttft, _ in results],
        [lag for _, followed in results for lag in followed.lags],
        [lag for _, followed in results for lag in followed.replay_lags],
        started_at=started_at,
        lag_received_at=[at for _, followed in results for at in followed.received],
        client_gc=[{"process": f"bench client {os.getpid()}", "gc": pauses.snapshot()}],
        ends=_ends([followed for _, followed in results], started_at),
    )


def _ends(streams: list[Followed], started_at: float) -> dict[str, list[float]]:
    """When each job's last token was made and arrived, and its done event came."""
    return {
        "last token made": [f.last_made - started_at for f in streams],
        "last token received": [f.last_received - started_at for f in streams],
        "done received": [f.done_received - started_at for f in streams],
    }


# Time the client processes get to start (spawn, imports) before they submit together.
CLIENT_START_S = 5.0


def run_streamed_in_processes(
    base_url: str, prompts: list[str], workload: Workload, processes: int
) -> RunResult:
    """`run_streamed` with the clients spread over processes, all starting at one instant.

    One Python process following 256 streams at ~17,000 tokens/s on an H100 spends most of
    its time parsing events, and its own backlog showed up as the queue's TTFT and delivery
    lag (and, at 26,000 tokens/s on two GPUs, as a submit burst spread over 2.4 s)."""
    slices = [prompts[i::processes] for i in range(processes)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        start_at = time.time() + CLIENT_START_S
        parts = pool.starmap(
            _client_process, [(base_url, part, workload, start_at) for part in slices]
        )
    seconds = max(part.started_at + part.seconds for part in parts) - start_at
    return RunResult(
        len(prompts),
        len(prompts) * workload.output_tokens,
        seconds,
        [ttft for part in parts for ttft in part.ttft_s],
        [lag for part in parts for lag in part.lag_s],
        [lag for part in parts for lag in part.replay_lag_s],
        started_at=start_at,
        lag_received_at=[at for part in parts for at in part.lag_received_at],
        client_gc=[beat for part in parts for beat in part.client_gc],
        ends={
            moment: [
                offset + part.started_at - start_at
                for part in parts
                for offset in part.ends[moment]
            ]
            for moment in parts[0].ends
        },
    )


def _client_process(
    base_url: str, prompts: list[str], workload: Workload, start_at: float
) -> RunResult:
    time.sleep(max(0.0, start_at - time.time()))
    return asyncio.run(run_streamed(base_url, prompts, workload))


async def run_polled(
    base_url: str, prompts: list[str], workload: Workload, interval: float = 0.1
) -> RunResult:
    """Submit every prompt at once, then poll each job until it has finished."""
    async with _session(base_url, len(prompts) + 8) as session:
        started = time.perf_counter()

        async def one(prompt: str) -> int:
            job_id = await _submit(session, {"prompt": prompt, **workload.sampling()})
            while True:
                async with session.get(f"/jobs/{job_id}") as response:
                    job = orjson.loads(await response.read())
                if job["status"] == "succeeded":
                    tokens: int = job["usage"]["completion_tokens"]
                    return tokens
                if job["status"] in {"failed", "cancelled"}:
                    raise RuntimeError(f"job {job_id} ended {job['status']}")
                await asyncio.sleep(interval)

        tokens = sum(await asyncio.gather(*(one(prompt) for prompt in prompts)))
        return RunResult(len(prompts), tokens, time.perf_counter() - started)


async def submit_rate(base_url: str, jobs: int, concurrency: int) -> float:
    """Jobs per second the API accepts (202) from `concurrency` clients, nothing else running."""
    body = {"prompt": "Say hello.", "max_tokens": 1}
    async with _session(base_url, concurrency) as session:
        remaining = iter(range(jobs))

        async def client_loop() -> None:
            for _ in remaining:
                await _submit(session, body)

        started = time.perf_counter()
        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        return jobs / (time.perf_counter() - started)


async def fan_out(
    base_url: str, prompts: list[str], workload: Workload, clients_per_job: int
) -> dict[str, Any]:
    """Many SSE clients on few jobs, all on one API process: did every client get every token?"""
    async with _session(base_url, len(prompts) * (clients_per_job + 1) + 8) as session:
        job_ids = [
            await _submit(session, {"prompt": prompt, **workload.sampling()}) for prompt in prompts
        ]
        started = time.perf_counter()
        streams = await asyncio.gather(
            *(follow(session, job_id) for job_id in job_ids for _ in range(clients_per_job))
        )
        seconds = time.perf_counter() - started
        finals = {}
        for job_id in job_ids:
            async with session.get(f"/jobs/{job_id}") as response:
                finals[job_id] = orjson.loads(await response.read())["text"]
    expected = [finals[job_id] for job_id in job_ids for _ in range(clients_per_job)]
    complete = sum(
        followed.text == final for followed, final in zip(streams, expected, strict=True)
    )
    return {
        "jobs": len(job_ids),
        "clients": len(streams),
        "clients_with_every_token": complete,
        "all_complete": complete == len(streams),
        "seconds": round(seconds, 2),
    }

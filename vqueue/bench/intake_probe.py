"""How long a task message's runs take to reach the engine loop once claimed, beside busy
threads: the worker as it was (runs handed to the loop one by one, log lines written by the
thread that logs them), with its runs handed over at once (EngineHost.submit_all), and with
its log lines queued for a writer thread as well (vqueue/logs.py), as it is now.

The worker's JobRunner takes a message of JOBS claimed rows (prompts of ~100 words), logs
each job's start, makes their prompts and sampling parameters and hands the runs to the
engine loop; a stand-in engine spends ADD_MS of Python on the loop per request, as
AsyncLLM's add_request does, and notes when each run began there. The log lines are JSON,
as in the worker, written to /dev/null. Busy threads stand for what shares the worker's GIL
while a burst comes in: the other messages' task threads, the Celery consumer, the token
publisher. The three ways are measured in turns, so they meet the same spells of the machine.

    python -m vqueue.bench.intake_probe [JOBS] [BUSY_THREADS...]   (256; 0 1 2 by default)
"""

import asyncio
import logging
import os
import random
import statistics
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from vqueue.bench.gil_convoy import busy_threads
from vqueue.bench.workload import WORDS
from vqueue.logs import configure_logging
from vqueue.settings import get_settings
from worker.engine import EngineHost
from worker.model_source import load_tokenizer
from worker.runner import JobRunner

ADD_MS = 0.1
ROUNDS = 7


class StandInEngine:
    """Takes each request for ADD_MS of the loop's time, then holds it until `release`."""

    def __init__(self) -> None:
        self.began: list[float] = []
        self.release = asyncio.Event()

    async def generate(self, *_: Any, **__: Any) -> AsyncIterator[Any]:
        until = time.perf_counter() + ADD_MS / 1000
        while time.perf_counter() < until:
            pass
        self.began.append(time.perf_counter())
        await self.release.wait()
        completion = SimpleNamespace(token_ids=[0], text="x", finish_reason="length")
        yield SimpleNamespace(outputs=[completion], prompt_token_ids=[0], finished=True)


class ProbeHost(EngineHost):
    def __init__(self, tokenizer: Any, at_once: bool) -> None:
        super().__init__(get_settings(), Path("stand-in"))
        self.engine = StandInEngine()
        self.max_model_len = 2048
        self._tokenizer = tokenizer
        self.at_once = at_once

    def tokenizer(self) -> Any:
        return self._tokenizer

    def submit_all(self, coros: list[Coroutine[Any, Any, Any]]) -> "list[Future[Any]]":
        if self.at_once:
            return super().submit_all(coros)
        return [self.submit(coro) for coro in coros]


class Rows:
    """The claimer: every job is claimed at once, with its row."""

    def __init__(self, rows: dict[str, dict[str, Any]]) -> None:
        self.rows = rows

    def claim(self, job_ids: list[str]) -> dict[str, dict[str, Any]]:
        return {job_id: self.rows[job_id] for job_id in job_ids}


class Ended:
    """The recorder and the publisher: nothing to store."""

    def record(self, _: object) -> "Future[None]":
        done: Future[None] = Future()
        done.set_result(None)
        return done

    def add(self, _: object) -> None:
        pass


def message(jobs: int, rng: random.Random) -> dict[str, dict[str, Any]]:
    rows = {}
    for _ in range(jobs):
        job_id = str(uuid.uuid4())
        prompt = " ".join(rng.choice(WORDS) for _ in range(100))
        params = {"max_tokens": 256, "temperature": 0.8, "top_p": 0.95}
        rows[job_id] = {"id": job_id, "attempt": 1, "messages": None, "prompt": prompt}
        rows[job_id] |= {"params": params, "priority": 0, "timeout_s": 3600}
    return rows


class Intakes(logging.Handler):
    """Keeps the `intake` field of the runner's log lines (worker/runner.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if (intake := getattr(record, "intake", None)) is not None:
            self.seen.append(intake)


@dataclass(frozen=True)
class Way:
    name: str
    at_once: bool  # the runs handed to the loop in one go
    queued_lines: bool  # log lines written by a thread of their own


WAYS = (
    Way("as it was", at_once=False, queued_lines=False),
    Way("runs handed over at once", at_once=True, queued_lines=False),
    Way("and log lines queued (as now)", at_once=True, queued_lines=True),
)


def intake_ms(host: ProbeHost, rows: dict[str, dict[str, Any]]) -> float:
    """From the runner's start to the last run beginning on the engine loop."""
    engine: StandInEngine = host.engine
    engine.began.clear()
    runner = JobRunner(host, Rows(rows), Ended(), Ended(), lambda _: None)  # type: ignore[arg-type]
    started = time.perf_counter()
    thread = threading.Thread(target=runner.run, args=(list(rows),))
    thread.start()
    while len(engine.began) < len(rows):
        time.sleep(0.001)
    taken = (max(engine.began) - started) * 1000
    host.loop.call_soon_threadsafe(engine.release.set)
    thread.join()
    host.loop.call_soon_threadsafe(engine.release.clear)
    return taken


def main() -> None:
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    busy_counts = [int(arg) for arg in sys.argv[2:]] or [0, 1, 2]
    tokenizer = load_tokenizer(get_settings())
    lines = open(os.devnull, "w")  # noqa: SIM115 (for the process's life)
    intakes = Intakes()
    logging.getLogger("worker.runner").addHandler(intakes)
    hosts = {way: ProbeHost(tokenizer, way.at_once).start_loop() for way in WAYS}
    rng = random.Random(0)
    configure_logging("json", stream=lines)
    intake_ms(hosts[WAYS[-1]], message(jobs, rng))  # imports and first calls, not measured
    print(f"{jobs} jobs, {ROUNDS} rounds, stand-in engine {ADD_MS:g} ms per request; medians")
    for busy in busy_counts:
        taken: dict[Way, list[float]] = {way: [] for way in WAYS}
        prompts: dict[Way, list[float]] = {way: [] for way in WAYS}
        with busy_threads(busy):
            for _ in range(ROUNDS):
                for way, host in hosts.items():
                    configure_logging("json", stream=lines, queued=way.queued_lines)
                    taken[way].append(intake_ms(host, message(jobs, rng)))
                    intake = intakes.seen[-1]
                    prompts[way].append((intake["ready"] - intake["claimed"]) * 1000)
        for way in WAYS:
            times = taken[way]
            print(
                f"beside {busy} busy threads, {way.name}: all on the engine loop in "
                f"{statistics.median(times):.0f} ms (range {min(times):.0f}-{max(times):.0f}), "
                f"prompts ready in {statistics.median(prompts[way]):.0f} ms"
            )


if __name__ == "__main__":
    main()

"""What the fault tests share: counting lost, doubled and stuck jobs, waiting for the stack's
supervisor to bring a part back, and readers that lose their connection mid-stream."""

import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from redis import Redis

from tests.helpers import recorded_successes
from vqueue.client.api_client import JOB_FINAL, ServerEvent, VQueueClient
from vqueue.dev import stack
from vqueue.settings import Settings


@dataclass
class Tally:
    lost: int  # ended other than succeeded
    duplicated: int  # recorded twice, or text that is not one attempt's whole output
    stuck: int  # not ended when the test stopped waiting


class LogTail:
    """What a log file gained since this was made."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size

    def lines_with(self, text: str) -> list[str]:
        with self.path.open("rb") as log:
            log.seek(self.offset)
            lines = log.read().decode(errors="replace").splitlines()
        return [line for line in lines if text in line]


def finals_of(client: VQueueClient, job_ids: list[str], timeout: float) -> list[dict[str, Any]]:
    """Each job's state once it ended, or as last seen when `timeout` ran out (stuck)."""
    deadline = time.monotonic() + timeout
    finals = []
    for job_id in job_ids:
        job = _polled(client, job_id, deadline)
        while job["status"] not in JOB_FINAL and time.monotonic() < deadline:
            time.sleep(0.2)
            job = _polled(client, job_id, deadline)
        finals.append(job)
    return finals


def _polled(client: VQueueClient, job_id: str, deadline: float) -> dict[str, Any]:
    """The job as a polling client sees it: a poll that went unanswered (an API process that
    is recovering, a machine that stalled) is asked again until `deadline`."""
    while True:
        try:
            return client.get(job_id)
        except httpx.TransportError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def tally(redis: Redis, finals: list[dict[str, Any]], max_tokens: int) -> Tally:
    """Over the final states of jobs generated with ignore_eos."""
    ended = [job for job in finals if job["status"] in JOB_FINAL]
    return Tally(
        lost=sum(job["status"] != "succeeded" for job in ended),
        duplicated=sum(
            recorded_successes(redis, job["id"]) > 1
            or job["usage"]["completion_tokens"] != max_tokens
            for job in ended
            if job["status"] == "succeeded"
        ),
        stuck=len(finals) - len(ended),
    )


def running_jobs(
    client: VQueueClient, prompt: str, count: int, max_tokens: int, timeout: float = 120
) -> list[dict[str, Any]]:
    """`count` jobs of `max_tokens` tokens each (ignore_eos), once each has produced text. All
    are watched together: a job that ran and ended while others were still queued (a worker
    that started late) counts as seen, not as a failure of the wait."""
    jobs = [
        client.submit(prompt=f"{prompt} {i}:", max_tokens=max_tokens, ignore_eos=True)
        for i in range(count)
    ]
    waiting = {job["id"] for job in jobs}
    deadline = time.monotonic() + timeout
    while waiting:
        for job_id in list(waiting):
            job = client.get(job_id)
            assert job["status"] in {"queued", "running", "succeeded"}, job
            if job["text"]:
                waiting.discard(job_id)
        assert time.monotonic() < deadline, f"jobs that never produced text: {waiting}"
        time.sleep(0.05)
    return jobs


def report(rows: list[dict[str, Any]], counts: Tally, **row: Any) -> None:
    """A row of docs/durability.md: the fault, its injection, the jobs in flight, the
    recovery and notes, with the tally's counts; nobody acted unless `person` says so."""
    rows.append(
        {
            "lost": counts.lost,
            "duplicated": counts.duplicated,
            "stuck": counts.stuck,
            "person": "no",
            **row,
        }
    )


def wait_until(predicate: Any, timeout: float, interval: float = 0.1) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "condition not met in time"
        time.sleep(interval)
    return time.monotonic() - started


def worker_listed(base_url: str, pid: int) -> bool:
    try:
        workers = httpx.get(f"{base_url}/ready", timeout=5).json()["workers"]
    except (httpx.HTTPError, ValueError, KeyError):
        return False
    return any(worker["name"].endswith(f":{pid}") for worker in workers)


def wait_for_restart(settings: Settings, name: str, old_pid: int, timeout: float = 300) -> int:
    """Until the supervisor has started a new `name` (no test starts it) and it serves;
    returns its pid."""

    def restarted() -> bool:
        pid = stack.running_pid(settings, name)
        if pid is None or pid == old_pid:
            return False
        if name == "worker":
            return worker_listed(stack.base_url(settings), pid)
        try:
            return httpx.get(stack.base_url(settings) + "/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(restarted, timeout, interval=0.5)
    pid = stack.running_pid(settings, name)
    assert pid is not None
    return pid


def sigkill_until_restarted(settings: Settings, name: str, timeout: float = 120) -> float:
    """SIGKILL to the part's main process alone; seconds until the supervisor's new one serves
    (`wait_for_restart`)."""
    pid = stack.running_pid(settings, name)
    assert pid is not None
    killed_at = time.monotonic()
    stack.kill(settings, name, signal.SIGKILL)
    wait_for_restart(settings, name, pid, timeout=timeout)
    return time.monotonic() - killed_at


def engine_pids(worker_pid: int) -> list[int]:
    """The worker's engine processes (vLLM's engine core and executor workers)."""
    return [child.pid for child in psutil.Process(worker_pid).children(recursive=True)]


def gone(pids: list[int]) -> bool:
    return not survivors(pids)


def survivors(pids: list[int]) -> list[str]:
    """Those of the processes still running, described for an assertion message."""
    found = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
            if process.status() != psutil.STATUS_ZOMBIE:
                found.append(
                    f"{pid} {process.name()} ({process.status()}, parent {process.ppid()}): "
                    f"{' '.join(process.cmdline())[:120]}"
                )
        except psutil.NoSuchProcess:
            pass
    return found


def wait_until_gone(pids: list[int], timeout: float) -> float:
    """Seconds until every one of the processes has ended; fails naming the survivors."""
    started = time.monotonic()
    while left := survivors(pids):
        assert time.monotonic() - started < timeout, f"still running: {left}"
        time.sleep(0.1)
    return time.monotonic() - started


@dataclass
class CutReader:
    """A reader that had part of a job's stream, then lost its connection."""

    job_id: str
    text: str = ""
    last_id: str | None = None

    def read(self, client: VQueueClient, deltas: int) -> "CutReader":
        seen = 0
        for event in client.stream(self.job_id):
            if event.event == "delta":
                self.text += event.data["text"]
                self.last_id = event.id
                seen += 1
                if seen == deltas:
                    break
        assert self.last_id is not None
        return self

    def resume(self, client: VQueueClient) -> tuple[bool, str]:
        """Comes back with Last-Event-ID: (whether a restart came first, the text after it)."""
        events = list(client.stream(self.job_id, last_event_id=self.last_id))
        names = [event.event for event in events]
        restarted = "restart" in names
        after = events[len(names) - names[::-1].index("restart") :] if restarted else events
        text = "".join(e.data["text"] for e in after if e.event == "delta")
        return restarted, text if restarted else self.text + text


def resume_all(
    client: VQueueClient, readers: list["CutReader"], finals: list[dict[str, Any]]
) -> tuple[int, int]:
    """The cut readers come back: (how many got a `restart` first, how many hold other than
    exactly their job's final text, a splice of two attempts, say)."""
    final_text = {job["id"]: job["text"] for job in finals}
    resumed = [(reader.job_id, *reader.resume(client)) for reader in readers]
    restarted = sum(restart for _, restart, _ in resumed)
    spliced = sum(text != final_text[job_id] for job_id, _, text in resumed)
    return restarted, spliced


def engine_core(worker_pid: int) -> psutil.Process:
    """The vLLM engine-core process under a worker."""
    (core,) = [
        child
        for child in psutil.Process(worker_pid).children()
        if "EngineCore" in child.name() or "EngineCore" in " ".join(child.cmdline())
    ]
    return core


@dataclass
class Follower:
    """A reader that follows a job's stream to the end, resuming after lost connections the
    way an SSE client does (Last-Event-ID), restarting its text on a `restart` event."""

    client: VQueueClient
    job_id: str
    text: str = ""
    restarts: int = 0
    reconnects: int = 0
    finished: bool = False
    error: BaseException | None = None
    events: list[ServerEvent] = field(default_factory=list)
    thread: threading.Thread | None = None

    def start(self) -> "Follower":
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def join(self, timeout: float) -> None:
        assert self.thread is not None
        self.thread.join(timeout)

    def _run(self) -> None:
        last_id: str | None = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                for event in self.client.stream(self.job_id, last_event_id=last_id):
                    self.events.append(event)
                    if event.event == "delta":
                        self.text += event.data["text"]
                    elif event.event == "restart":
                        self.text = ""
                        self.restarts += 1
                    elif event.event == "done":
                        self.finished = True
                        return
                    last_id = event.id or last_id
            except (httpx.TransportError, httpx.HTTPStatusError) as exc:
                self.reconnects += 1
                self.error = exc
                time.sleep(0.5)
        raise AssertionError(f"{self.job_id}: the stream did not end")

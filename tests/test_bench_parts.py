"""Parts of the benchmark that decide what its figures mean: the prompts each run gets, and
the CPU accounting (which part of the stack a process belongs to), how the runs of the
two sides taken in turns are paired and chosen, which GC pauses fell in a run, how a
run's jobs reached the engine, and how a comparison run one side per call is put together."""

import asyncio
import gc
import itertools
import json
import socket
import subprocess
import sys
import time

import pytest
from redis import Redis

from benchmarks import queue_side
from benchmarks.cpu_use import BARE_ENGINE, BENCH, CpuUse, group_of
from benchmarks.gc_pauses import describe, heartbeats_after, pauses_in_run
from benchmarks.intake import (
    intake_lines,
    intake_stages,
    record_lines,
    record_stages,
    with_intake,
)
from benchmarks.late_tokens import describe as late_describe
from benchmarks.late_tokens import late_bursts
from benchmarks.sides import results_to_extend, runs
from benchmarks.step_tap import StepTap
from benchmarks.turns import QueueRun, median_pair, take_turns
from benchmarks.watch_probe import run_one
from benchmarks.workload import Prompts, RunResult, Workload
from vqueue.client.api_client import VQueueClient
from vqueue.contract.phases import Phase, PhaseTiming
from vqueue.contract.wire import EVENTS_CHANNEL, EntryKind, LogEntry, encode_events
from vqueue.dev import stack
from vqueue.gc_heap import GcPauses
from vqueue.models.default_model import prepared_path
from vqueue.settings import Settings


def test_each_run_gets_new_prompts_and_both_sides_the_same(settings: Settings) -> None:
    queue_side = Prompts(prepared_path(settings.model_cache_dir), 16)
    warm_up, measured = queue_side.take("warm-up 0", 8), queue_side.take("measured", 8)
    # Nothing the engine saw while warming up comes back (it would be served from its cache).
    assert len(set(warm_up + measured)) == 16
    # Asked again, for the other side or a smaller level: the same prompts, in order.
    assert queue_side.take("measured", 8) == measured
    assert queue_side.take("measured", 3) == measured[:3]
    assert queue_side.take("measured", 10)[:8] == measured
    assert not set(queue_side.take("single 0", 1)) & set(warm_up + measured)


BENCH_PID = 100
PROCESSES = {
    1: (0, "/sbin/init", 0),
    BENCH_PID: (1, "python -m benchmarks --label x", 0),
    101: (BENCH_PID, "python -m api", 0),
    102: (101, "python -c from multiprocessing.spawn import spawn_main", 0),
    103: (BENCH_PID, "[celeryd: celery@vm:MainProcess] -active- ()", 0),
    104: (103, "VLLM::EngineCore", 0),
    105: (BENCH_PID, "python -c from multiprocessing.spawn import spawn_main", 0),
    106: (1, "postgres: 15/main: postgres vqueue_bench 127.0.0.1(5000) idle", 0),
    107: (1, "/usr/bin/redis-server 127.0.0.1:6379", 0),
    108: (1, "python3 -m worker", 0),
    109: (1, "sshd: root", 0),
    110: (BENCH_PID, "VLLM::EngineCore", 0),
    111: (110, "VLLM::Worker", 0),
    112: (104, "VLLM::Worker", 0),
}


def test_each_process_counts_for_its_nearest_named_ancestor() -> None:
    groups = {pid: group_of(pid, PROCESSES, BENCH_PID) for pid in PROCESSES}
    assert groups == {
        1: "other",
        BENCH_PID: BENCH,
        101: "api",
        102: "api",  # a uvicorn worker process
        103: "worker",
        104: "engine core",  # not its worker's
        105: BENCH,  # a client process
        106: "postgres",
        107: "redis",
        108: "worker",  # one started beside the bench, as scripts/gpu-bench does
        109: "other",
        110: BARE_ENGINE,  # the bench's own, up while the two sides take turns
        111: BARE_ENGINE,
        112: "engine core",
    }


def test_a_busy_child_is_counted_in_the_host_and_its_group() -> None:
    use = CpuUse()
    spin = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass"
    subprocess.run([sys.executable, "-c", spin], check=True)
    read = use.read()
    busy = read["busy_cores"]
    assert isinstance(busy, dict)
    seconds = read["seconds"]
    assert isinstance(seconds, float)
    # The child ended before the read: its time is its parent's (this process, the "bench").
    assert busy[BENCH] * seconds >= 0.5
    assert read["host_busy_cores"] * seconds >= 0.5


def test_runs_in_turns_pair_the_same_prompts_and_report_the_median_pair() -> None:
    # Stand-ins for the two sides: what is under test is the order and the choice of pair.
    order: list[str] = []
    queue_rates = {"measured 0": 90.0, "measured 1": 120.0, "measured 2": 100.0}
    bare_rates = {"measured 0": 100.0, "measured 1": 100.0, "measured 2": 125.0}

    async def queue_run(name: str) -> QueueRun:
        order.append(f"queue {name}")
        return QueueRun(RunResult(4, int(queue_rates[name]), 1.0), {"name": name})

    async def bare_run(name: str) -> RunResult:
        order.append(f"bare {name}")
        return RunResult(4, int(bare_rates[name]), 1.0)

    pairs = asyncio.run(take_turns(list(queue_rates), queue_run, bare_run, settle_s=0))
    assert order == [f"{side} measured {i}" for i in range(3) for side in ("queue", "bare")]
    # Ratios 0.9, 1.2 and 0.8: the median pair is the first, whatever the order of the rates.
    chosen = median_pair(pairs)
    assert chosen.queue.details == {"name": "measured 0"}
    assert chosen.summary() == {"queue_tok_s": 90.0, "bare_tok_s": 100.0, "ratio": 0.9}
    assert median_pair(pairs[1:]).ratio == 1.2  # of two, the upper one


def test_each_run_in_turns_starts_after_the_other_engines_busy_loop() -> None:
    # A vLLM engine's worker keeps polling for a second after its last step; on a small CPU
    # host both engines share a core, so each run waits for the other side's to have ended.
    events: list[tuple[str, float]] = []

    async def side(name: str) -> RunResult:
        events.append(("start", time.monotonic()))
        await asyncio.sleep(0.01)
        events.append(("end", time.monotonic()))
        return RunResult(1, 10, 1.0)

    async def queue_run(name: str) -> QueueRun:
        return QueueRun(await side(name))

    asyncio.run(take_turns(["measured 0", "measured 1"], queue_run, side, settle_s=0.2))
    starts = [at for kind, at in events if kind == "start"]
    ends = [at for kind, at in events if kind == "end"]
    assert len(starts) == 4
    assert all(start - end >= 0.2 for start, end in zip(starts[1:], ends, strict=False))


def test_the_report_names_the_workers_gc_pauses_inside_the_measured_run_only() -> None:
    beat = {
        "name": "gpu-host:1",
        "process": "worker gpu-host:1",
        "gc": {
            "frozen_objects": 630_000,
            "recent": [[99.0, 2, 320.0], [100.5, 2, 310.0], [103.0, 1, 6.0]],
        },
    }
    found = pauses_in_run([beat], start=100.0, end=102.0)
    assert found == {
        "frozen_objects": {"worker gpu-host:1": 630_000},
        "pauses": [{"process": "worker gpu-host:1", "at_ms": 500, "generation": 2, "ms": 310.0}],
    }
    assert "worker gpu-host:1: 310 ms (generation 2) at 500 ms" in describe(found)
    assert "no pause" in describe(pauses_in_run([beat], start=104.0, end=105.0))


def test_the_bench_reads_a_heartbeat_sent_after_the_run(base_url: str, settings: Settings) -> None:
    ended = time.time()
    beats = heartbeats_after(settings.redis_url, ended, timeout=10 * settings.worker_heartbeat_s)
    by_process = {beat["process"]: beat for beat in beats}
    worker, api = (
        by_process[f"{part} {socket.gethostname()}:{stack.running_pid(settings, part)}"]
        for part in ("worker", "api")
    )
    assert worker["beat_at"] > ended
    assert api["beat_at"] > ended
    # The startup heaps, frozen: the engine's frontend in the worker, the app in the API.
    assert worker["gc"]["frozen_objects"] > 100_000
    assert api["gc"]["frozen_objects"] > 10_000


def test_late_tokens_that_arrive_together_are_one_burst() -> None:
    start = 1000.0
    # A stall: three streams' tokens arrive together 2 s in; one straggler alone at 5 s;
    # on-time tokens are not counted.
    lags = [0.060, 0.055, 0.050, 0.004, 0.030]
    received = [1002.000, 1002.010, 1002.020, 1003.000, 1005.000]
    found = late_bursts(lags, received, start)
    assert found == {
        "late_tokens": 4,
        "bursts": 2,
        "largest": [
            {"at_ms": 2000, "tokens": 3, "max_lag_ms": 60.0},
            {"at_ms": 5000, "tokens": 1, "max_lag_ms": 30.0},
        ],
    }
    assert "4 tokens arrived more than 20 ms" in late_describe(found)
    assert late_bursts([0.004], [1001.0], start)["late_tokens"] == 0


def test_the_step_tap_times_each_token_as_it_reaches_redis(
    redis: Redis, settings: Settings
) -> None:
    tap = StepTap(settings.redis_url).start()
    now = time.time()
    step = [
        LogEntry("job-a", 1, EntryKind.DELTA, 10, "Hello", at=now - 100),
        LogEntry("job-a", 1, EntryKind.END, 10, status="succeeded", at=now - 200),
    ]
    # A prefill step: two jobs' first tokens and a third job's later one.
    prefill = [
        LogEntry("job-b", 1, EntryKind.DELTA, 2, "Hi", at=now - 50),
        LogEntry("job-c", 1, EntryKind.DELTA, 3, "Yes", at=now - 50),
        LogEntry("job-d", 1, EntryKind.DELTA, 9, "more", at=now - 50),
    ]
    redis.publish(EVENTS_CHANNEL, encode_events(step))
    redis.publish(EVENTS_CHANNEL, encode_events(prefill))
    time.sleep(0.5)
    received, lags, firsts = tap.stop()
    # The delta, about 100 s after it was made; the END entry is not a token.
    assert [lag for lag in lags if lag > 99] == [pytest.approx(100, abs=5)]
    assert max(lags) < 199
    assert len(received) == len(lags)
    assert firsts == [(now - 50, 2)]


def test_the_intake_stages_count_each_job_of_a_message_at_its_time() -> None:
    start = 1000.0
    events = [
        PhaseTiming(Phase.CLAIM, 1, 1000.03, 1000.04),
        PhaseTiming(Phase.PREPARE, 1, 1000.04, 1000.05),
        PhaseTiming(Phase.HAND_OFF, 1, 1000.05, 1000.06),
        PhaseTiming(Phase.PREPARE, 3, 1000.09, 1000.12),
        PhaseTiming(Phase.HAND_OFF, 3, 1000.12, 1000.15),
    ]
    stages = intake_stages(events, start)
    assert stages["prompts_ready"] == {"first": 50.0, "p50": 120.0, "last": 120.0}
    assert stages["on_engine_loop"] == {"first": 60.0, "p50": 150.0, "last": 150.0}
    spread_at = {"first": 1.0, "p50": 1.0, "last": 1.0}
    ordered = with_intake({"claimed": spread_at, "first_token": spread_at}, stages)
    assert list(ordered) == ["claimed", "prompts_ready", "on_engine_loop", "first_token"]


def _phase_count(metrics: str, phase: Phase) -> float:
    name = f'vqueue_job_phase_seconds_count{{phase="{phase.value}"}} '
    (line,) = [line for line in metrics.splitlines() if line.startswith(name)]
    return float(line.split()[-1])


def test_each_phase_of_a_job_is_one_event_that_the_bench_and_metrics_both_read(
    client: VQueueClient, settings: Settings
) -> None:
    before_metrics = client.http.get("/metrics").text
    before = time.time()
    job = client.submit(prompt="Tell me a story.", max_tokens=4)
    assert client.wait(job["id"])["status"] == "succeeded"
    events: list[PhaseTiming] = []
    deadline = time.time() + 30  # the hand-off's line is written once the runs have begun
    while len(events) < len(Phase) and time.time() < deadline:
        time.sleep(0.1)
        window = (before, time.time())
        events = intake_lines(settings.run_dir, window) + record_lines(settings.run_dir, window)
    # One event per phase, for the one job, each following the last.
    assert [event.phase for event in events] == list(Phase)
    assert all(event.jobs == 1 for event in events)
    assert before <= events[0].began
    for earlier, later in itertools.pairwise(events):
        assert earlier.began <= earlier.ended <= later.ended
    stages = record_stages(events, before)
    assert list(stages) == ["run_ended", "result_written", "end_published"]
    # /metrics counts the same phases, once per job: the recorder sent them with its metrics.
    after_metrics = client.http.get("/metrics").text
    for phase in Phase:
        assert _phase_count(after_metrics, phase) - _phase_count(before_metrics, phase) >= 1


def test_the_clients_report_their_own_gc_pauses(base_url: str) -> None:
    run = asyncio.run(
        queue_side.run_streamed(base_url, ["Say hi."], Workload(1, 4, output_tokens=3))
    )
    assert run.tokens == 3
    (client,) = run.client_gc
    assert client["process"].startswith("bench client ")
    # Heartbeat-shaped, so the report places its pauses beside the stack's.
    assert pauses_in_run([client], start=0.0, end=time.time())["pauses"] == [
        {"process": client["process"], "at_ms": round(at * 1000), "generation": g, "ms": ms}
        for at, g, ms in client["gc"]["recent"]
    ]
    # Uninstalled once the run is over: the process's later collections are not counted.
    assert not any(isinstance(getattr(cb, "__self__", None), GcPauses) for cb in gc.callbacks)


def test_a_run_summary_shows_where_first_tokens_and_ends_fell() -> None:
    # Two prefill steps: half the jobs' first tokens at 100 ms, the other half at 300 ms.
    run = RunResult(
        4, 40, 1.0, [0.1, 0.1, 0.3, 0.3], ends={"done received": [0.9, 1.0, 0.95, 0.91]}
    )
    summary = run.summary()
    deciles = summary["ttft_deciles_ms"]
    assert (len(deciles), deciles[0], deciles[4], deciles[-1]) == (9, 100.0, 200.0, 300.0)
    assert summary["ends"]["done received"] == {"first": 900.0, "p50": 930.0, "last": 1000.0}


def test_the_watch_probe_times_a_job_by_its_own_timestamps(client: VQueueClient) -> None:
    workload = Workload(jobs=1, prompt_tokens=0, output_tokens=16)
    for watched in (True, False):
        run = run_one(client, workload, watched)
        # 15 tokens after the first, over the worker's first-token-to-finish span: a real
        # decode speed, not the client's wait (the unwatched side polls once a second).
        assert 1 < run["tok_s"] < 10_000
        assert run["to_first_ms"] > 0


def test_a_comparison_run_one_side_per_call_completes_the_first_calls_report(tmp_path) -> None:
    report = tmp_path / "serve-compare-x.json"
    first = results_to_extend(report, "queue", {"label": "x", "started": "09:40"})
    assert first == {"label": "x", "started": "09:40"}  # nothing earlier: a fresh report
    first["queue"] = {"output_throughput": 1.0}
    report.write_text(json.dumps(first))
    second = results_to_extend(report, "peer", {"label": "x", "started": "09:43"})
    # The peer's side joins the queue's, and the report says when each call ran.
    assert second["queue"] == {"output_throughput": 1.0}
    assert second["started"] == "09:40"
    assert second["calls"] == [{"side": "peer", "started": "09:43"}]
    # Both sides in one call start over, whatever an earlier call left.
    assert results_to_extend(report, "both", {"started": "10:00"}) == {"started": "10:00"}
    assert [runs(side, "queue") for side in ("both", "queue", "peer")] == [True, True, False]

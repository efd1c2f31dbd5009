"""A round of finished runs is summed before it goes to Redis: one increment per field; the
phase timings go with it; every API process's collections are in /metrics."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from api.ops.process_beat import ProcessBeat, api_processes
from vqueue.contract.metrics import BUCKETS, METRICS_KEY, Exposition, FinishedRuns
from vqueue.contract.phases import PHASE_BUCKETS, Phase, PhaseTiming
from vqueue.gc_heap import GcPauses
from vqueue.settings import Settings


class Pipe:
    def __init__(self) -> None:
        self.commands: list[tuple[str, str, str, Any]] = []

    def hincrby(self, key: str, field: str, amount: int) -> None:
        self.commands.append(("hincrby", key, field, amount))

    def hincrbyfloat(self, key: str, field: str, amount: float) -> None:
        self.commands.append(("hincrbyfloat", key, field, amount))


def test_runs_that_finish_together_are_summed_field_by_field() -> None:
    created = datetime(2026, 12, 1, tzinfo=UTC)
    runs = FinishedRuns()
    for _ in range(200):
        runs.add(
            status="succeeded",
            created_at=created,
            started_at=created + timedelta(seconds=0.03),
            first_token_at=created + timedelta(seconds=0.3),
            finished_at=created + timedelta(seconds=4),
            completion_tokens=256,
        )
    runs.add(
        status="failed",
        created_at=created,
        started_at=created + timedelta(seconds=0.2),
        first_token_at=None,  # failed before its first token: no TTFT
        finished_at=created + timedelta(seconds=0.2),
        completion_tokens=0,
    )
    pipe = Pipe()
    runs.send(pipe)
    fields = [field for _, _, field, _ in pipe.commands]
    assert len(fields) == len(set(fields)) < 60  # one command per field, not ~50 per run
    sent = {field: amount for _, key, field, amount in pipe.commands if key == METRICS_KEY}
    assert sent["finished:succeeded"] == 200
    assert sent["finished:failed"] == 1
    assert sent["output_tokens"] == 200 * 256
    assert sent["queue:count"] == 201
    assert sent["queue:le:0.05"] == 200  # 0.03 s: in every bucket from 0.05 up
    assert sent["queue:le:0.25"] == 201
    assert sent["ttft:count"] == 200
    assert "ttft:le:0.25" not in sent  # 0.3 s
    assert sent["ttft:le:0.5"] == 200
    assert sent["duration:le:5.0"] == 201
    assert sent[f"duration:le:{BUCKETS[-1]}"] == 201
    assert abs(sent["duration:sum"] - (200 * 4 + 0.2)) < 1e-6


def test_a_phase_counts_once_per_job_and_renders_as_one_histogram() -> None:
    runs = FinishedRuns()
    runs.add_phase(PhaseTiming(Phase.WRITE, 64, 100.0, 100.004))  # 4 ms for 64 jobs at once
    runs.add_phase(PhaseTiming(Phase.WRITE, 1, 200.0, 200.2))
    runs.add_phase(PhaseTiming(Phase.CLAIM, 2, 300.0, 299.9))  # a clock step back: 0, not < 0
    pipe = Pipe()
    runs.send(pipe)
    sent = {field: amount for _, _, field, amount in pipe.commands}
    assert sent["phase:write:count"] == 65
    assert "phase:write:le:0.0025" not in sent
    assert sent["phase:write:le:0.005"] == 64
    assert sent["phase:write:le:0.25"] == 65
    assert abs(sent["phase:write:sum"] - (64 * 0.004 + 0.2)) < 1e-6
    assert sent[f"phase:claim:le:{PHASE_BUCKETS[0]}"] == 2
    out = Exposition()
    out.phase_histogram({field: str(amount) for field, amount in sent.items()})
    text = out.text()
    # One HELP and TYPE for the metric, a series per phase: what Prometheus' parser requires.
    assert text.count("# TYPE vqueue_job_phase_seconds histogram") == 1
    assert 'vqueue_job_phase_seconds_count{phase="write"} 65.0' in text
    assert 'vqueue_job_phase_seconds_bucket{phase="write",le="+Inf"} 65.0' in text
    assert 'vqueue_job_phase_seconds_count{phase="publish"} 0.0' in text
    assert len([line for line in text.splitlines() if "_count{" in line]) == len(Phase)


def test_every_live_api_process_reports_its_collections(settings: Settings) -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        redis = Redis.from_url(settings.redis_url)
        here, other = (ProcessBeat(redis, GcPauses(), 5.0) for _ in range(2))
        other.name = "another-host:4242"  # a second API process, as its own beat names it
        try:
            await other.beat()
            both = [beat["name"] for beat in await api_processes(redis, here)]
            await other.close()  # it stopped: its key goes with it
            alone = [beat["name"] for beat in await api_processes(redis, here)]
        finally:
            await other.close()
            await redis.aclose()
        return both, alone

    both, alone = asyncio.run(scenario())
    here_name = ProcessBeat(Redis(), GcPauses(), 5.0).name
    # The running stack's own API processes may be beating beside these two.
    assert {"another-host:4242", here_name} <= set(both)
    assert here_name in alone
    assert "another-host:4242" not in alone
    assert both == sorted(both)

"""A round of finished runs is summed before it goes to Redis: one increment per field."""

from datetime import UTC, datetime, timedelta
from typing import Any

from vqueue.contract.metrics import BUCKETS, METRICS_KEY, FinishedRuns


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

"""Job figures kept in Redis, written by workers as jobs finish and read by every API process.

Counters and histogram buckets live in one Redis hash, so they are shared by all API
processes and survive their restarts (Prometheus treats a Redis flush as a counter reset).
Latencies are measured from the job's creation: time in queue (to start), time to first
token, and end to end.
"""

from collections import Counter, defaultdict
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from vqueue.contract.phases import PHASE_BUCKETS, PHASE_HISTOGRAM, Phase, PhaseTiming

METRICS_KEY = "vqueue:metrics"
# Fields of METRICS_KEY counting a process's restarts by its supervisor: "restarts:<part>".
RESTARTS_PREFIX = "restarts:"
# Seconds; LLM jobs range from sub-second answers to hour-long generations.
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
HISTOGRAMS = {
    "queue": ("vqueue_job_queue_seconds", "Time from submit to the start of the run"),
    "ttft": ("vqueue_job_time_to_first_token_seconds", "Time from submit to the first token"),
    "duration": ("vqueue_job_duration_seconds", "Time from submit to the end of the run"),
}


def _since(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else max(0.0, (end - start).total_seconds())


class FinishedRuns:
    """The figures of runs that finished together, summed here and sent as one increment per
    field. A run adds to ~50 fields; sent one command each, the 256 runs of a GPU burst that
    end together made a pipeline of ~12,800 commands, built and read back in the worker's
    recorder thread (beside the busy engine loop) while the next runs' results waited."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.sums: defaultdict[str, float] = defaultdict(float)

    def add(
        self,
        *,
        status: str,
        created_at: datetime,
        started_at: datetime | None,
        first_token_at: datetime | None,
        finished_at: datetime,
        completion_tokens: int,
        prompt_tokens: int = 0,
    ) -> None:
        self.counts[f"finished:{status}"] += 1
        self.counts["output_tokens"] += completion_tokens
        self.counts["prompt_tokens"] += prompt_tokens
        values = {
            "queue": _since(created_at, started_at),
            "ttft": _since(created_at, first_token_at),
            "duration": _since(created_at, finished_at),
        }
        for name, value in values.items():
            if value is None:
                continue
            for bound in BUCKETS:
                if value <= bound:
                    self.counts[f"{name}:le:{bound}"] += 1
            self.counts[f"{name}:count"] += 1
            self.sums[f"{name}:sum"] += value

    def add_phase(self, timing: PhaseTiming) -> None:
        """One observation per job of the phase (vqueue/contract/phases.py)."""
        key = f"phase:{timing.phase.value}"
        for bound in PHASE_BUCKETS:
            if timing.seconds <= bound:
                self.counts[f"{key}:le:{bound}"] += timing.jobs
        self.counts[f"{key}:count"] += timing.jobs
        self.sums[f"{key}:sum"] += timing.seconds * timing.jobs

    def send(self, pipe: Any) -> None:
        """Queue the increments on a Redis pipeline (the caller executes it)."""
        for field, count in self.counts.items():
            pipe.hincrby(METRICS_KEY, field, count)
        for field, total in self.sums.items():
            pipe.hincrbyfloat(METRICS_KEY, field, total)


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Exposition:
    """Prometheus' text format, built metric by metric."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(
        self, name: str, kind: str, help_text: str, samples: list[tuple[dict[str, Any], float]]
    ) -> None:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for labels, value in samples:
            rendered = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{rendered}}} {value}" if rendered else f"{name} {value}")

    def histograms(
        self,
        fields: Mapping[str, str],
        names: Mapping[str, tuple[str, str]] = HISTOGRAMS,
        labels: Mapping[str, Any] | None = None,
    ) -> None:
        """The histograms of `fields`, under `names` (key -> name, help), with `labels`."""
        for key, (name, help_text) in names.items():
            self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
            self._series(fields, key, name, BUCKETS, labels or {})

    def phase_histogram(self, fields: Mapping[str, str]) -> None:
        """`vqueue_job_phase_seconds`, a series per phase (vqueue/contract/phases.py)."""
        name, help_text = PHASE_HISTOGRAM
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        for phase in Phase:
            self._series(fields, f"phase:{phase.value}", name, PHASE_BUCKETS, {"phase": phase})

    def _series(
        self,
        fields: Mapping[str, str],
        key: str,
        name: str,
        buckets: tuple[float, ...],
        labels: Mapping[str, Any],
    ) -> None:
        extra = "".join(f'{k}="{_label(v)}",' for k, v in labels.items())
        plain = f"{{{extra.rstrip(',')}}}" if extra else ""
        count = float(fields.get(f"{key}:count", 0))
        self.lines += [
            f'{name}_bucket{{{extra}le="{bound}"}} {float(fields.get(f"{key}:le:{bound}", 0))}'
            for bound in buckets
        ]
        self.lines += [
            f'{name}_bucket{{{extra}le="+Inf"}} {count}',
            f"{name}_sum{plain} {float(fields.get(f'{key}:sum', 0))}",
            f"{name}_count{plain} {count}",
        ]

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"

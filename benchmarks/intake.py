"""How the run's jobs moved inside the workers, from the lines each worker logs: `intake` per
task message (worker/runner.py), when its prompts were ready (claim read, prompts tokenized)
and when every run of the message had begun on the engine loop; `record` per recorder round
(worker/recorder.py), when its last run ended, its results were written and its END entries
published. The first sit between "claimed" and "first token" in the report's timeline, the
others between the last token and the done event.
"""

from pathlib import Path
from typing import Any

import orjson

from benchmarks.workload import spread

# The stage name in the timeline, and the field of the line it is read from.
INTAKE_STAGES = {"prompts_ready": "ready", "on_engine_loop": "loop_last"}
RECORD_STAGES = {
    "run_ended": "last_run_ended",
    "result_written": "written",
    "end_published": "published",
}


def worker_lines(
    run_dir: Path, window: tuple[float, float], key: str, instant: str
) -> list[dict[str, Any]]:
    """Every worker's `key` fields whose `instant` is within `window` (epoch seconds)."""
    found = []
    marker = f'"{key}"'.encode()
    for path in sorted(run_dir.glob("worker*.log")):
        with path.open("rb") as log:
            for line in log:
                if marker not in line:
                    continue
                try:
                    fields = orjson.loads(line)[key]
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut short, or not the JSON log
                if window[0] <= fields.get(instant, 0) <= window[1]:
                    found.append(fields)
    return found


def intake_lines(run_dir: Path, window: tuple[float, float]) -> list[dict[str, Any]]:
    """The intake of the messages claimed within `window`."""
    return worker_lines(run_dir, window, "intake", "claimed")


def record_lines(run_dir: Path, window: tuple[float, float]) -> list[dict[str, Any]]:
    """The recorder rounds begun within `window`."""
    return worker_lines(run_dir, window, "record", "taken")


def line_stages(
    lines: list[dict[str, Any]], started: float, stages: dict[str, str]
) -> dict[str, Any]:
    """Per stage, first / median / last job in ms after `started`; each job of a line (a
    message, a round) counts at its line's time."""
    found = {}
    for stage, field in stages.items():
        offsets = [
            (line[field] - started) * 1000
            for line in lines
            if field in line
            for _ in range(line["jobs"])
        ]
        if offsets:
            found[stage] = spread(offsets)
    return found


def intake_stages(lines: list[dict[str, Any]], started: float) -> dict[str, Any]:
    return line_stages(lines, started, INTAKE_STAGES)


def record_stages(lines: list[dict[str, Any]], started: float) -> dict[str, Any]:
    return line_stages(lines, started, RECORD_STAGES)


def with_intake(timeline: dict[str, Any], intake: dict[str, Any]) -> dict[str, Any]:
    """The timeline with the intake stages put just before the first token."""
    ordered: dict[str, Any] = {}
    for stage, at in timeline.items():
        if stage == "first_token":
            ordered |= intake
        ordered[stage] = at
    return ordered | {stage: at for stage, at in intake.items() if stage not in ordered}

"""How the run's jobs reached the engine inside the workers, from the `intake` line each
worker logs per task message (worker/runner.py): when their prompts were ready (claim read,
prompts tokenized) and when every run of the message had begun on the engine loop. These
sit between "claimed" and "first token" in the report's timeline.
"""

from pathlib import Path
from typing import Any

import orjson

from vqueue.bench.timeline import spread

# The stage name in the timeline, and the field of the intake line it is read from.
STAGES = {"prompts_ready": "ready", "on_engine_loop": "loop_last"}


def intake_lines(run_dir: Path, window: tuple[float, float]) -> list[dict[str, Any]]:
    """Every worker's intake fields for the messages claimed within `window` (epoch seconds)."""
    found = []
    for path in sorted(run_dir.glob("worker*.log")):
        with path.open("rb") as log:
            for line in log:
                if b'"intake"' not in line:
                    continue
                try:
                    fields = orjson.loads(line)["intake"]
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut short, or not the JSON log
                if window[0] <= fields.get("claimed", 0) <= window[1]:
                    found.append(fields)
    return found


def intake_stages(lines: list[dict[str, Any]], started: float) -> dict[str, Any]:
    """Per stage, first / median / last job in ms after `started`; each job of a message
    counts at its message's time."""
    stages = {}
    for stage, field in STAGES.items():
        offsets = [
            (line[field] - started) * 1000
            for line in lines
            if field in line
            for _ in range(line["jobs"])
        ]
        if offsets:
            stages[stage] = spread(offsets)
    return stages


def with_intake(timeline: dict[str, Any], intake: dict[str, Any]) -> dict[str, Any]:
    """The timeline with the intake stages put just before the first token."""
    ordered: dict[str, Any] = {}
    for stage, at in timeline.items():
        if stage == "first_token":
            ordered |= intake
        ordered[stage] = at
    return ordered | {stage: at for stage, at in intake.items() if stage not in ordered}

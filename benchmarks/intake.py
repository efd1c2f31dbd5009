"""How the run's jobs moved inside the workers, from the phase events each worker logs
(vqueue/contract/phases.py, the `phase` field of its JSON log): the way in (claimed, prompts
ready, every run of the message on the engine loop) sits between "claimed" and "first token"
in the report's timeline, the way out (the round's last run ended, its results written, its
END entries published) between the last token and the done event.
"""

from pathlib import Path
from typing import Any

import orjson

from benchmarks.workload import spread
from vqueue.contract.phases import Phase, PhaseTiming

# The stage name in the timeline, and the phase and instant it is read from.
INTAKE_STAGES = {
    "prompts_ready": (Phase.PREPARE, "ended"),
    "on_engine_loop": (Phase.HAND_OFF, "ended"),
}
RECORD_STAGES = {
    "run_ended": (Phase.RECORD_WAIT, "began"),
    "result_written": (Phase.WRITE, "ended"),
    "end_published": (Phase.PUBLISH, "ended"),
}
INTAKE_PHASES = (Phase.CLAIM, Phase.PREPARE, Phase.HAND_OFF)
RECORD_PHASES = (Phase.RECORD_WAIT, Phase.WRITE, Phase.PUBLISH)


def phase_events(
    run_dir: Path, window: tuple[float, float], phases: tuple[Phase, ...]
) -> list[PhaseTiming]:
    """Every worker's events of `phases` that began within `window` (epoch seconds)."""
    found = []
    for path in sorted(run_dir.glob("worker*.log")):
        with path.open("rb") as log:
            for line in log:
                if b'"phase"' not in line:
                    continue
                try:
                    timing = PhaseTiming.from_fields(orjson.loads(line)["phase"])
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue  # a line cut short, or not the JSON log
                if timing.phase in phases and window[0] <= timing.began <= window[1]:
                    found.append(timing)
    return found


def intake_lines(run_dir: Path, window: tuple[float, float]) -> list[PhaseTiming]:
    """The way in of the messages claimed within `window`."""
    return phase_events(run_dir, window, INTAKE_PHASES)


def record_lines(run_dir: Path, window: tuple[float, float]) -> list[PhaseTiming]:
    """The way out of the recorder rounds within `window`."""
    return phase_events(run_dir, window, RECORD_PHASES)


def line_stages(
    events: list[PhaseTiming], started: float, stages: dict[str, tuple[Phase, str]]
) -> dict[str, Any]:
    """Per stage, first / median / last job in ms after `started`; each job of an event (a
    message, a round) counts at its event's time."""
    found = {}
    for stage, (phase, instant) in stages.items():
        offsets = [
            (getattr(event, instant) - started) * 1000
            for event in events
            if event.phase == phase
            for _ in range(event.jobs)
        ]
        if offsets:
            found[stage] = spread(offsets)
    return found


def intake_stages(events: list[PhaseTiming], started: float) -> dict[str, Any]:
    return line_stages(events, started, INTAKE_STAGES)


def record_stages(events: list[PhaseTiming], started: float) -> dict[str, Any]:
    return line_stages(events, started, RECORD_STAGES)


def with_intake(timeline: dict[str, Any], intake: dict[str, Any]) -> dict[str, Any]:
    """The timeline with the intake stages put just before the first token."""
    ordered: dict[str, Any] = {}
    for stage, at in timeline.items():
        if stage == "first_token":
            ordered |= intake
        ordered[stage] = at
    return ordered | {stage: at for stage, at in intake.items() if stage not in ordered}

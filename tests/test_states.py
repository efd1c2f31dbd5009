import ast
from pathlib import Path

import pytest

from db.states import (
    BATCH_TRANSITIONS,
    TERMINAL_STATES,
    TRANSITIONS,
    BatchStatus,
    JobStatus,
    sources_of,
)
from db.transitions import batch_move, job_move


def test_only_queued_jobs_start() -> None:
    assert sources_of(JobStatus.RUNNING) == [JobStatus.QUEUED]


def test_final_states_are_final() -> None:
    for status in TERMINAL_STATES:
        assert status.is_terminal
        assert TRANSITIONS[status] == frozenset()
    assert not JobStatus.RUNNING.is_terminal


def test_results_land_on_running_or_requeued_jobs_only() -> None:
    assert sources_of(JobStatus.SUCCEEDED) == [JobStatus.QUEUED, JobStatus.RUNNING]


def test_a_move_the_tables_do_not_allow_is_refused_when_built() -> None:
    with pytest.raises(ValueError, match="jobs: no move from \\['succeeded'\\] to queued"):
        job_move(JobStatus.QUEUED, only_from=[JobStatus.SUCCEEDED])
    with pytest.raises(ValueError, match="batches: no move from \\['validating'\\] to cancelling"):
        batch_move(BatchStatus.CANCELLING, only_from=[BatchStatus.VALIDATING])
    move = job_move(JobStatus.CANCELLED, only_from=[JobStatus.QUEUED])
    assert move.values == {"status": JobStatus.CANCELLED}
    assert str(move.guard.compile()) == "jobs.status = :status_1"


def test_batches_end_only_through_their_table() -> None:
    assert [s for s in BatchStatus if s.is_terminal] == [
        BatchStatus.COMPLETED,
        BatchStatus.FAILED,
        BatchStatus.CANCELLED,
    ]
    assert BatchStatus.CANCELLING in BATCH_TRANSITIONS[BatchStatus.IN_PROGRESS]


def test_every_status_change_in_db_is_built_from_a_move() -> None:
    """A statement that sets `status=` by hand would bypass the transition tables."""
    offenders = []
    for path in sorted((Path(__file__).resolve().parent.parent / "db").glob("*.py")):
        if path.name == "transitions.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "values"
                and any(keyword.arg == "status" for keyword in node.keywords)
            ):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []

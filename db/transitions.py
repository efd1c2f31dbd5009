"""Status changes as conditional UPDATEs, checked against the transition tables of db/states.py.

A statement that moves a row to a new status filters on the states it may come from and sets
the new one: `job_move(target)` gives both, refusing (at import, when the statement is built)
a move the table does not allow. `only_from` narrows the sources where a statement means
fewer of them (cancelling a queued job is not cancelling a running one).
"""

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Table, case, or_

from db.schema import batches, jobs, webhook_deliveries
from db.states import (
    BATCH_TRANSITIONS,
    DELIVERY_TRANSITIONS,
    TRANSITIONS,
    BatchStatus,
    DeliveryStatus,
    JobStatus,
)


@dataclass(frozen=True)
class Move:
    """The WHERE clause (the row is in an allowed source state) and the SET of a status move."""

    guard: ColumnElement[bool]
    values: dict[str, Any]


def _move(
    table: Table,
    transitions: dict[Any, frozenset[Any]],
    target: StrEnum,
    only_from: Iterable[StrEnum] | None,
) -> Move:
    allowed = [source for source, targets in transitions.items() if target in targets]
    sources = allowed if only_from is None else list(only_from)
    refused = [str(source) for source in sources if source not in allowed]
    if refused or not sources:
        raise ValueError(f"{table.name}: no move from {refused or 'nowhere'} to {target}")
    column = table.c.status
    guard = column == sources[0] if len(sources) == 1 else column.in_(sources)
    return Move(guard, {"status": target})


def job_move(target: JobStatus, *, only_from: Iterable[JobStatus] | None = None) -> Move:
    return _move(jobs, TRANSITIONS, target, only_from)


def batch_move(target: BatchStatus, *, only_from: Iterable[BatchStatus] | None = None) -> Move:
    return _move(batches, BATCH_TRANSITIONS, target, only_from)


def delivery_move(target: DeliveryStatus) -> Move:
    return _move(webhook_deliveries, DELIVERY_TRANSITIONS, target, None)


def either(*moves: Move) -> Move:
    """Several moves in one statement: each row takes the first move whose source it is in."""
    status = case(*((move.guard, move.values["status"].value) for move in moves))
    return Move(or_(*(move.guard for move in moves)), {"status": status})

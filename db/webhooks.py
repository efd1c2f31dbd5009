"""The webhook outbox and signing secrets: claiming due deliveries, recording each try, the
listings the API shows, re-sending. The triggers of migration 0013 insert the events."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Select,
    Update,
    case,
    func,
    literal,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.sql.dml import ReturningInsert

from db.schema import owned_by, webhook_deliveries, webhook_secrets
from db.states import DeliveryStatus
from db.transitions import delivery_move

LOST_TRY = "no answer recorded: the process sending it stopped"


def claim_due(limit: int, lease_s: float, per_owner: int) -> Update:
    """Take up to `limit` due deliveries for this process (SKIP LOCKED: processes never take
    the same one), and none that would put more than `per_owner` of one owner's deliveries in
    flight: a key whose receivers hang holds that many tries, not every process's slots. A
    delivery whose lease lapsed was being sent by a process that died: its lost try is
    written down and it is taken over."""
    d = webhook_deliveries
    pending = d.c.status == DeliveryStatus.PENDING
    # No process holds it: never leased, or its holder's lease lapsed.
    unheld = or_(d.c.lease_expires_at.is_(None), d.c.lease_expires_at < func.now())
    in_flight = (
        select(d.c.owner_id, func.count().label("count"))
        .where(pending, d.c.lease_expires_at >= func.now())
        .group_by(d.c.owner_id)
        .subquery()
    )
    ranked = (
        select(
            d.c.id,
            func.row_number()
            .over(partition_by=d.c.owner_id, order_by=d.c.next_attempt_at)
            .label("place"),
            func.coalesce(in_flight.c.count, 0).label("busy"),
        )
        .select_from(d.outerjoin(in_flight, in_flight.c.owner_id == d.c.owner_id))
        .where(pending, d.c.next_attempt_at <= func.now(), unheld)
        .subquery()
    )
    within_share = select(ranked.c.id).where(ranked.c.place + ranked.c.busy <= per_owner)
    due = (
        select(d.c.id)
        .where(
            d.c.id.in_(within_share),
            # Again here: a row another process took since the subquery's snapshot is skipped.
            pending,
            unheld,
        )
        .order_by(d.c.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    lost = func.jsonb_build_array(
        func.jsonb_build_object("at", d.c.lease_expires_at, "error", LOST_TRY)
    )
    return (
        update(d)
        .where(d.c.id.in_(due))
        .values(
            lease_token=func.gen_random_uuid(),
            lease_expires_at=func.now() + func.make_interval(0, 0, 0, 0, 0, 0, lease_s),
            attempt_count=d.c.attempt_count + 1,
            attempts=case(
                (d.c.lease_expires_at.is_not(None), d.c.attempts.op("||")(lost)),
                else_=d.c.attempts,
            ),
        )
        .returning(d)
    )


def set_payload(delivery_id: uuid.UUID, lease: uuid.UUID, payload: str) -> Update:
    """The event as first sent; every later try sends it unchanged."""
    d = webhook_deliveries
    return (
        update(d)
        .where(d.c.id == delivery_id, d.c.lease_token == lease, d.c.payload.is_(None))
        .values(payload=payload)
    )


def forget_payloads(job_id: uuid.UUID) -> Update:
    """The stored events of a job whose content was deleted: a try or re-send from now on
    renders what is left of it (that it was deleted), never the deleted text."""
    d = webhook_deliveries
    return update(d).where(d.c.job_id == job_id, d.c.payload.is_not(None)).values(payload=None)


def record_try(
    delivery_id: uuid.UUID,
    lease: uuid.UUID,
    outcome: dict[str, Any],
    *,
    delivered: bool,
    retry_in_s: float | None,
) -> Update:
    """One try's outcome, by the process that holds the lease: delivered, due again after
    `retry_in_s` (still pending), or (None) given up."""
    d = webhook_deliveries
    values: dict[str, Any] = {
        "attempts": d.c.attempts.op("||")(type_coerce([outcome], JSONB)),
        "lease_token": None,
        "lease_expires_at": None,
    }
    if delivered:
        values |= delivery_move(DeliveryStatus.DELIVERED).values | {"delivered_at": func.now()}
    elif retry_in_s is None:
        values |= delivery_move(DeliveryStatus.FAILED).values
    else:
        values["next_attempt_at"] = func.now() + func.make_interval(0, 0, 0, 0, 0, 0, retry_in_s)
    return update(d).where(d.c.id == delivery_id, d.c.lease_token == lease).values(**values)


def list_deliveries(
    scope: uuid.UUID | None,
    *,
    limit: int,
    after: datetime | None = None,
    job_id: uuid.UUID | None = None,
    batch_id: uuid.UUID | None = None,
    status: str | None = None,
) -> Select[Any]:
    """Newest first; `after` is the created_at of the last one of the page before."""
    d = webhook_deliveries
    query = select(d).where(owned_by(d.c.owner_id, scope))
    if job_id is not None:
        query = query.where(d.c.job_id == job_id)
    if batch_id is not None:
        query = query.where(d.c.batch_id == batch_id)
    if status is not None:
        query = query.where(d.c.status == status)
    if after is not None:
        query = query.where(d.c.created_at < after)
    return query.order_by(d.c.created_at.desc(), d.c.id.desc()).limit(limit)


def get_delivery(delivery_id: uuid.UUID, scope: uuid.UUID | None) -> Select[Any]:
    d = webhook_deliveries
    return select(d).where(d.c.id == delivery_id, owned_by(d.c.owner_id, scope))


def resend(delivery_id: uuid.UUID, scope: uuid.UUID | None) -> Update:
    """A delivered or failed delivery due again now, with the retry schedule from its start;
    the same id and payload."""
    d = webhook_deliveries
    move = delivery_move(DeliveryStatus.PENDING)
    return (
        update(d)
        .where(d.c.id == delivery_id, owned_by(d.c.owner_id, scope), move.guard)
        .values(
            **move.values,
            next_attempt_at=func.now(),
            attempt_count=0,
            lease_token=None,
            lease_expires_at=None,
        )
        .returning(d)
    )


def signing_secrets(owner_id: uuid.UUID) -> Select[Any]:
    """The secrets that sign an owner's deliveries now: the current one, and the one before
    while its overlap lasts."""
    s = webhook_secrets
    previous = case(
        (s.c.previous_until > func.now(), s.c.previous_secret), else_=literal(None)
    ).label("previous")
    return select(s.c.secret, previous, s.c.previous_until, s.c.created_at).where(
        s.c.owner_id == owner_id
    )


def put_secret(owner_id: uuid.UUID, secret: str, overlap_s: int) -> ReturningInsert[Any]:
    """A new secret for the owner; the one it replaces keeps signing for `overlap_s`."""
    s = webhook_secrets
    statement = insert(s).values(owner_id=owner_id, secret=secret)
    return statement.on_conflict_do_update(
        index_elements=[s.c.owner_id],
        set_={
            "secret": statement.excluded.secret,
            "previous_secret": s.c.secret,
            "previous_until": func.now() + func.make_interval(0, 0, 0, 0, 0, 0, overlap_s),
            "created_at": func.now(),
        },
    ).returning(s.c.created_at, s.c.previous_until)


def secret_dates(owner_id: uuid.UUID) -> Select[Any]:
    """When the owner's current secret was made, and until when the one before still signs
    (None: it does not); no row: the owner has none. The secrets themselves are not read."""
    s = webhook_secrets
    previous_until = case(
        (s.c.previous_until > func.now(), s.c.previous_until), else_=literal(None)
    ).label("previous_valid_until")
    return select(s.c.created_at, previous_until).where(s.c.owner_id == owner_id)

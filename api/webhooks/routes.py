"""The signing secret of a key, and the deliveries of its events: listed, read, re-sent."""

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Response

from api.core.auth import CallerDep
from api.core.error_schemas import ErrorResponse
from api.core.errors import ConflictError, NotFoundError
from api.core.resources import ResourcesDep, first_row
from api.webhooks.events import message_id
from api.webhooks.schemas import Attempt, DeliveriesPublic, DeliveryPublic, SecretPublic
from api.webhooks.signing import new_secret
from db.states import DeliveryStatus
from db.webhooks import get_delivery, list_deliveries, put_secret, resend, secret_dates

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No delivery with this id"}
}


def delivery_public(row: Mapping[Any, Any]) -> DeliveryPublic:
    return DeliveryPublic(
        id=message_id(row["id"]),
        type=row["type"],
        status=row["status"],
        url=row["url"],
        job_id=None if row["job_id"] is None else str(row["job_id"]),
        batch_id=None if row["batch_id"] is None else str(row["batch_id"]),
        created_at=row["created_at"],
        next_attempt_at=row["next_attempt_at"] if row["status"] == DeliveryStatus.PENDING else None,
        delivered_at=row["delivered_at"],
        attempts=[Attempt(**attempt) for attempt in row["attempts"]],
        event=None if row["payload"] is None else orjson.loads(row["payload"]),
    )


def _delivery_uuid(delivery_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(hex=delivery_id.removeprefix("msg_"))
    except ValueError:
        raise NotFoundError(f"no delivery {delivery_id!r}") from None


@router.post("/secret", status_code=201, response_model=SecretPublic)
async def make_secret(resources: ResourcesDep, caller: CallerDep) -> SecretPublic:
    """A new signing secret for this key's webhooks, shown this once. One made before keeps
    signing too for VQUEUE_WEBHOOK_SECRET_OVERLAP_S, so receivers can move over."""
    secret = new_secret()
    overlap = resources.settings.webhook_secret_overlap_s
    async with resources.db.begin() as conn:
        made = (await conn.execute(put_secret(caller.owner_id, secret, overlap))).one()
    return SecretPublic(
        secret=secret, created_at=made.created_at, previous_valid_until=made.previous_until
    )


@router.get(
    "/secret",
    response_model=SecretPublic,
    responses={404: {"model": ErrorResponse, "description": "This key has no secret"}},
)
async def read_secret(resources: ResourcesDep, caller: CallerDep) -> SecretPublic:
    """When this key's secret was made (never the secret itself)."""
    row = await first_row(resources.db, secret_dates(caller.owner_id))
    if row is None:
        raise NotFoundError("this key has no webhook signing secret; POST /webhooks/secret")
    return SecretPublic(**row)


@router.get("/deliveries", response_model=DeliveriesPublic)
async def read_deliveries(
    resources: ResourcesDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[
        datetime | None, Query(description="The created_at of the page's last delivery")
    ] = None,
    job_id: uuid.UUID | None = None,
    batch_id: uuid.UUID | None = None,
    status: Literal["pending", "delivered", "failed"] | None = None,
) -> DeliveriesPublic:
    """This key's deliveries, newest first."""
    query = list_deliveries(
        caller.scope, limit=limit + 1, after=after, job_id=job_id, batch_id=batch_id, status=status
    )
    async with resources.db.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return DeliveriesPublic(
        data=[delivery_public(row) for row in rows[:limit]], has_more=len(rows) > limit
    )


@router.get("/deliveries/{delivery_id}", response_model=DeliveryPublic, responses=NOT_FOUND)
async def read_delivery(
    delivery_id: str, resources: ResourcesDep, caller: CallerDep
) -> DeliveryPublic:
    row = await first_row(resources.db, get_delivery(_delivery_uuid(delivery_id), caller.scope))
    if row is None:
        raise NotFoundError(f"no delivery {delivery_id!r}")
    return delivery_public(row)


@router.post(
    "/deliveries/{delivery_id}/resend",
    status_code=202,
    response_model=DeliveryPublic,
    responses={
        **NOT_FOUND,
        409: {"model": ErrorResponse, "description": "It is still being tried"},
    },
)
async def resend_delivery(
    delivery_id: str, resources: ResourcesDep, caller: CallerDep, response: Response
) -> DeliveryPublic:
    """Send a delivered or failed event again now, with its id and body, and the retry
    schedule from the start."""
    delivery_uuid = _delivery_uuid(delivery_id)
    async with resources.db.begin() as conn:
        row = (await conn.execute(resend(delivery_uuid, caller.scope))).mappings().first()
        if row is None:
            found = (await conn.execute(get_delivery(delivery_uuid, caller.scope))).first()
            if found is None:
                raise NotFoundError(f"no delivery {delivery_id!r}")
            raise ConflictError(
                "this delivery is still being tried (next at "
                f"{found.next_attempt_at.isoformat()}); re-send it once it is delivered or failed"
            )
    response.headers["Location"] = f"/webhooks/deliveries/{delivery_id}"
    return delivery_public(row)

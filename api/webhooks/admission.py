"""Whether a new job, response or batch may name its webhook: the destination passes the
policy now, and the key has a signing secret to sign its events with."""

from dataclasses import dataclass

from api.core.callers import Caller
from api.core.resources import Resources, first_row
from api.webhooks.destinations import DestinationPolicy, DestinationRefused, resolve
from db.webhooks import secret_dates


@dataclass(frozen=True)
class Refusal:
    """Why a webhook cannot be taken: the field at fault (in a JSON body) and the message of
    the 400, which names it."""

    param: str
    message: str


async def webhook_refusal(resources: Resources, caller: Caller, url: str) -> Refusal | None:
    try:
        await resolve(url, DestinationPolicy.from_settings(resources.settings))
    except DestinationRefused as exc:
        return Refusal("webhook.url", f"webhook.url: {exc}")
    if await first_row(resources.db, secret_dates(caller.owner_id)) is None:
        return Refusal(
            "webhook",
            "webhook: this key has no signing secret yet; make one with POST /webhooks/secret "
            "(it is shown once)",
        )
    return None

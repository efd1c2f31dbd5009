"""Whether a new job, response or batch may name its webhook: the destination passes the
policy now, and the key has a signing secret to sign its events with."""

from api.core.callers import Caller
from api.core.resources import Resources, first_row
from api.webhooks.destinations import DestinationPolicy, DestinationRefused, resolve
from db.webhooks import secret_made_at


async def webhook_refusal(resources: Resources, caller: Caller, url: str) -> str | None:
    """Why the webhook cannot be taken (the message of a 400), or None."""
    try:
        await resolve(url, DestinationPolicy.from_settings(resources.settings))
    except DestinationRefused as exc:
        return f"webhook.url: {exc}"
    if await first_row(resources.db, secret_made_at(caller.owner_id)) is None:
        return (
            "webhook: this key has no signing secret yet; make one with POST /webhooks/secret "
            "(it is shown once)"
        )
    return None

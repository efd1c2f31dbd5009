"""One try of one delivery: resolve and check the destination, POST the signed event to the
address that was checked, and say how it went. Redirects are not followed; only a 2xx
answer delivers."""

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx

from api.webhooks.destinations import DestinationPolicy, DestinationRefused, resolve
from api.webhooks.signing import signed_headers

USER_AGENT = "vqueue-webhooks/1"


@dataclass(frozen=True)
class Outcome:
    status_code: int | None = None
    error: str | None = None
    duration_ms: int = 0

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    def record(self, at: str) -> dict[str, Any]:
        return {
            "at": at,
            "status_code": self.status_code,
            "error": self.error,
            "duration_ms": self.duration_ms,
        }


async def send(
    client: httpx.AsyncClient,
    policy: DestinationPolicy,
    url: str,
    message_id: str,
    body: bytes,
    signing_secrets: list[str],
    timeout_s: float,
) -> Outcome:
    """A try that runs past `timeout_s` in all (a receiver that hangs, or trickles its answer)
    fails like any other."""
    started = time.monotonic()

    def took() -> int:
        return round((time.monotonic() - started) * 1000)

    try:
        address = await resolve(url, policy)
    except DestinationRefused as exc:
        return Outcome(error=f"refused: {exc}", duration_ms=took())
    target = httpx.URL(url)
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        # The URL names the checked address; the receiver still sees its own host name.
        "host": target.netloc.decode("ascii"),
        **signed_headers(signing_secrets, message_id, int(time.time()), body),
    }
    request = client.build_request(
        "POST",
        target.copy_with(host=str(address)),
        headers=headers,
        content=body,
        extensions={"sni_hostname": target.host},
    )
    try:
        async with asyncio.timeout(timeout_s):
            answer = await client.send(request, stream=True)
            await answer.aclose()  # its body is not read: the status is the answer
    except (httpx.TimeoutException, TimeoutError):
        return Outcome(error="timed out", duration_ms=took())
    except httpx.HTTPError as exc:
        return Outcome(error=f"{type(exc).__name__}: {exc}"[:500], duration_ms=took())
    error = None
    if answer.is_redirect:
        error = "redirect not followed"
    elif not answer.is_success:
        error = f"answered {answer.status_code}"
    return Outcome(status_code=answer.status_code, error=error, duration_ms=took())

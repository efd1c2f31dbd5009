"""What every /v1 route and vLLM's extra routes read first: the JSON body, bounded, and the
models served here."""

from typing import Any

import orjson
from fastapi import Request

from api.core.resources import Resources
from api.openai.errors import OpenAIError, invalid_request
from api.ops.live_workers import worker_descriptions
from vqueue.settings import Settings


async def served_models(resources: Resources) -> list[str]:
    """The settings' model name first, then any other model a live worker announces."""
    names = [resources.settings.model_name]
    for worker in await worker_descriptions(resources.redis):
        if worker["model"] not in names:
            names.append(worker["model"])
    return names


# A request body is a prompt plus a few parameters; the prompt limit bounds it (a character
# is at most 6 bytes as escaped JSON).
BODY_OVERHEAD = 64 * 1024


async def json_body(request: Request, settings: Settings) -> dict[str, Any]:
    limit = settings.max_prompt_chars * 6 + BODY_OVERHEAD
    size = 0
    chunks = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise OpenAIError(
                413, f"the request body is over the limit of {limit} bytes", "invalid_request_error"
            )
        chunks.append(chunk)
    try:
        body = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise invalid_request(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise invalid_request("the body must be a JSON object")
    return body

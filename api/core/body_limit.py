"""Request bodies over a size limit are refused before they are read whole.

A declared Content-Length over the limit is answered 413 at once; a chunked body is counted
as it arrives and cut off at the limit. Batch uploads have their own, larger limit
(VQUEUE_MAX_BATCH_BYTES, enforced while they stream to disk); every other route takes at most
VQUEUE_MAX_REQUEST_BYTES.
"""

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from api.core.error_schemas import ErrorBody
from api.core.errors import shaped_response
from vqueue.settings import Settings

# Whatever multipart adds around the file (boundaries, part headers) on top of the limit.
MULTIPART_OVERHEAD = 64 * 1024
UPLOAD_PATHS = ("/batches", "/v1/files")


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.request_limit = settings.max_request_bytes
        self.upload_limit = settings.max_batch_bytes + MULTIPART_OVERHEAD

    def limit_for(self, path: str) -> int:
        return self.upload_limit if path in UPLOAD_PATHS else self.request_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            message = f"the request body is {int(declared)} bytes, over the limit of {limit}"
            body = ErrorBody(code="payload_too_large", message=message)
            await shaped_response(Request(scope), 413, body)(scope, receive, send)
            return
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, f"the request body is over the limit of {limit} bytes")
            return message

        await self.app(scope, counted, send)

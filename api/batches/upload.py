"""Receiving an upload, multipart or raw, into a temporary file without holding it in memory.

api/core/body_limit.py already refuses a declared Content-Length over the limit (plus multipart's
overhead) and cuts a chunked body off there; here the file itself is held to the limit.
"""

import hashlib
import tempfile
from dataclasses import dataclass
from typing import IO

from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect, Request

from api.core.errors import BadRequestError, PayloadTooLargeError

# Kept in memory up to this, then spilled to disk.
SPOOL_BYTES = 8 * 1024 * 1024


@dataclass
class Upload:
    file: IO[bytes]
    size: int
    sha256: str
    filename: str | None
    content_type: str | None

    def close(self) -> None:
        self.file.close()


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"the upload is over the limit of {limit} bytes")


def _digest(file: IO[bytes]) -> tuple[int, str]:
    file.seek(0)
    digest = hashlib.sha256()
    size = 0
    while chunk := file.read(1024 * 1024):
        digest.update(chunk)
        size += len(chunk)
    file.seek(0)
    return size, digest.hexdigest()


async def _multipart(request: Request, limit: int) -> Upload:
    form = await request.form(max_files=1, max_fields=8)
    upload = form.get("file")
    others = [name for name in form if name != "file"]
    if not isinstance(upload, UploadFile) or others:
        await form.close()
        raise BadRequestError(
            "a multipart upload carries one file, in the field 'file'"
            + (f" (unexpected fields: {', '.join(map(repr, others))})" if others else "")
            + "; batch options go in the query string"
        )
    size, sha256 = _digest(upload.file)
    if size > limit:
        await form.close()
        raise _too_large(limit)
    return Upload(upload.file, size, sha256, upload.filename, upload.content_type)


async def _raw(request: Request, limit: int) -> Upload:
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
    digest = hashlib.sha256()
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            digest.update(chunk)
            spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return Upload(spool, size, digest.hexdigest(), None, request.headers.get("content-type"))


async def receive_upload(request: Request, limit: int) -> Upload:
    """The request's file: the `file` part of a multipart form, or else the whole body."""
    content_type = request.headers.get("content-type", "")
    try:
        if content_type.lower().startswith("multipart/form-data"):
            return await _multipart(request, limit)
        return await _raw(request, limit)
    except ClientDisconnect:
        raise BadRequestError("the client went away before the upload was complete") from None

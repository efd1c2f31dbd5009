"""One error base class, one JSON shape ({"error": {code, message, details}}), one handler set."""

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.core.error_schemas import ErrorBody, ErrorDetail, ErrorResponse
from api.core.field_names import field_name
from api.openai.errors import OPENAI_PREFIX, OpenAIError

log = logging.getLogger(__name__)


class APIError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        details: list[ErrorDetail] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.headers = headers


class BadRequestError(APIError):
    status_code = 400
    code = "bad_request"


class UnauthorizedError(APIError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class ForbiddenError(APIError):
    status_code = 403
    code = "forbidden"


class TooManyRequestsError(APIError):
    """A key's own limit; Retry-After says when the request can succeed."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after_s))})


class PayloadTooLargeError(APIError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaTypeError(APIError):
    status_code = 415
    code = "unsupported_media_type"


class InvalidInputError(APIError):
    """Well-formed request, unusable content (a batch file's bad lines, say)."""

    status_code = 422
    code = "validation_error"


class NotFoundError(APIError):
    status_code = 404
    code = "not_found"


class ConflictError(APIError):
    status_code = 409
    code = "conflict"


class ServiceUnavailableError(APIError):
    status_code = 503
    code = "unavailable"


class OverloadedError(APIError):
    """The whole queue is full; not one caller's fault, so 503 rather than 429."""

    status_code = 503
    code = "overloaded"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after_s))})


def error_response(status_code: int, body: ErrorBody) -> JSONResponse:
    content = ErrorResponse(error=body).model_dump(mode="json")
    return JSONResponse(status_code=status_code, content=content)


def shaped_response(
    request: Request, status_code: int, body: ErrorBody, headers: dict[str, str] | None = None
) -> JSONResponse:
    """Our error shape, or OpenAI's on the OpenAI-compatible routes (/v1/...)."""
    if request.url.path.startswith(OPENAI_PREFIX):
        param = body.details[0].field if body.details else None
        message = body.details[0].message if body.details and param else body.message
        # OpenAI answers every invalid request with 400, where we say 422.
        status = 400 if status_code == 422 else status_code
        error = OpenAIError(status, message, param=param, code=body.code)
        return error.response(headers)
    response = error_response(status_code, body)
    if headers:
        response.headers.update(headers)
    return response


async def _openai_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OpenAIError)
    return exc.response()


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, APIError)
    body = ErrorBody(code=exc.code, message=exc.message, details=exc.details)
    return shaped_response(request, exc.status_code, body, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        ErrorDetail(
            field=field_name(tuple(error.get("loc", ())), error.get("msg", "")),
            message=error.get("msg", "invalid"),
        )
        for error in jsonable_encoder(exc.errors())
    ]
    fields = sorted({d.field for d in details if d.field})
    message = "invalid request" + (f": check {', '.join(fields)}" if fields else "")
    body = ErrorBody(code="validation_error", message=message, details=details)
    return shaped_response(request, 422, body)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    body = ErrorBody(code="http_error", message=str(exc.detail))
    return shaped_response(request, exc.status_code, body)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # A bug: the documented JSON error, with a reference to the logged traceback and none of
    # the internals.
    reference = log_with_reference(f"unexpected error on {request.method} {request.url.path}", exc)
    body = ErrorBody(
        code="internal_error", message=f"internal error (reference {reference}); try again"
    )
    # Starlette re-raises after this answer and uvicorn then drops the connection: said
    # here, a keep-alive client opens a new one instead of sending its next request into it.
    return shaped_response(request, 500, body, headers={"Connection": "close"})


def log_with_reference(what: str, exc: BaseException) -> str:
    """Log an unexpected error with its traceback under a fresh reference, which the client
    is given instead of the internals."""
    reference = uuid.uuid4().hex[:12]
    log.error("%s (reference %s)", what, reference, exc_info=exc)
    return reference


def install_error_handlers(app: FastAPI) -> None:
    # Starlette's ServerErrorMiddleware answers with this instead of plain text.
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OpenAIError, _openai_error)

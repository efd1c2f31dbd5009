"""One error base class, one JSON shape ({"error": {code, message, details}}), one handler set."""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.schemas import ErrorBody, ErrorDetail, ErrorResponse


class APIError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, details: list[ErrorDetail] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class BadRequestError(APIError):
    status_code = 400
    code = "bad_request"


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


def error_response(status_code: int, body: ErrorBody) -> JSONResponse:
    content = ErrorResponse(error=body).model_dump(mode="json")
    return JSONResponse(status_code=status_code, content=content)


def _field_name(loc: tuple[Any, ...]) -> str | None:
    # FastAPI prefixes the source ("body", "query"); a model-level check has no field of its own.
    parts = (
        [str(part) for part in loc[1:]]
        if loc and loc[0] in {"body", "query", "path", "header"}
        else [str(p) for p in loc]
    )
    return ".".join(parts) or None


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, APIError)
    return error_response(
        exc.status_code, ErrorBody(code=exc.code, message=exc.message, details=exc.details)
    )


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        ErrorDetail(
            field=_field_name(tuple(error.get("loc", ()))), message=error.get("msg", "invalid")
        )
        for error in jsonable_encoder(exc.errors())
    ]
    fields = sorted({d.field for d in details if d.field})
    message = "invalid request" + (f": check {', '.join(fields)}" if fields else "")
    return error_response(422, ErrorBody(code="validation_error", message=message, details=details))


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(exc.status_code, ErrorBody(code="http_error", message=str(exc.detail)))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)

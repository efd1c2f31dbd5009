"""OpenAI's error object, `{"error": {"message", "type", "param", "code"}}`, for /v1 routes.

Errors raised anywhere while serving a /v1 path (validation, a database outage) are given this
shape by the app's handlers, so OpenAI clients can read every failure.
"""

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from api.core.field_names import field_name

OPENAI_PREFIX = "/v1/"
TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class OpenAIError(Exception):
    def __init__(
        self,
        status_code: int,
        message: str,
        error_type: str | None = None,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.type = error_type or TYPE_BY_STATUS.get(status_code, "server_error")
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status_code, headers=headers)


def invalid_request(message: str, param: str | None = None) -> OpenAIError:
    return OpenAIError(400, message, "invalid_request_error", param)


def from_validation(exc: ValidationError) -> OpenAIError:
    """The first problem pydantic found, with the parameter it concerns."""
    error = exc.errors(include_url=False)[0]
    param = field_name(tuple(error["loc"]), error["msg"])
    where = ".".join(str(part) for part in error["loc"])
    return invalid_request(f"{where}: {error['msg']}" if where else error["msg"], param)


class OpenAIErrorObject(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIErrorResponse(BaseModel):
    """The documented shape of every error on a /v1 route."""

    error: OpenAIErrorObject


# What any /v1 route may answer besides its success (OpenAI says 400 where we say 422).
OPENAI_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": OpenAIErrorResponse, "description": description}
    for status, description in (
        (400, "Invalid request: the parameter at fault is named in `param`"),
        (401, "No valid API key"),
        (404, "No such object (or one of another key)"),
        (413, "Request body over the size limit"),
        (429, "Over one of this key's limits (see Retry-After)"),
        (503, "Queue full, or Postgres or Redis unavailable"),
    )
}

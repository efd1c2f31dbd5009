"""The settings of the app serving the current request, for the checks that run where no
request reaches: the validators of request bodies. Read per request from the app, never
frozen at import, so an app made with its own Settings checks with its own limits."""

from collections.abc import Callable, Sized
from contextvars import ContextVar
from typing import Any

from pydantic import AfterValidator
from starlette.types import ASGIApp, Receive, Scope, Send

from vqueue.settings import Settings, get_settings

_serving: ContextVar[Settings | None] = ContextVar("serving_settings", default=None)


def serving_settings() -> Settings:
    """The serving app's settings; outside a request (a CLI, a test), the environment's."""
    return _serving.get() or get_settings()


class ServingSettingsMiddleware:
    """Makes the app's settings the serving ones for everything its requests run."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = _serving.set(self.settings)
        try:
            await self.app(scope, receive, send)
        finally:
            _serving.reset(token)


def _check(setting: str, measure: Callable[[Any], int], unit: str) -> AfterValidator:
    def check(value: Any) -> Any:
        limit = getattr(serving_settings(), setting)
        if value is not None and (size := measure(value)) > limit:
            raise ValueError(f"{size}{unit} is over this service's limit of {limit}")
        return value

    return AfterValidator(check)


def at_most(setting: str) -> AfterValidator:
    """A number no larger than the setting's value."""
    return _check(setting, lambda value: int(value), "")


def no_longer_than(setting: str, unit: str) -> AfterValidator:
    """A string or list no longer than the setting's value."""

    def length(value: Sized) -> int:
        return len(value)

    return _check(setting, length, f" {unit}")

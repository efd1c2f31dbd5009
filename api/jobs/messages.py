"""The turns of a chat job, as OpenAI's messages carry them: the roles a template may show,
and the tool calls and results of a conversation that uses tools (api/jobs/tools.py)."""

from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from api.core.serving_settings import no_longer_than
from api.jobs.tools import MAX_TOOLS, FunctionName

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class Role(StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"  # a function's result, answering an assistant's tool call


class CalledFunction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: FunctionName
    arguments: Annotated[str, no_longer_than("max_prompt_chars", "characters")]


class MessageToolCall(BaseModel):
    """A call an assistant turn made, as OpenAI's messages carry it."""

    model_config = ConfigDict(extra="forbid")

    id: Identifier
    type: Literal["function"] = "function"
    function: CalledFunction


def _is_none(value: Any) -> bool:
    return value is None


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Roles are a closed set, so a prompt can never name a template role of its own.
    role: Role
    # None only for an assistant turn that made tool calls; a tool's result may be empty.
    content: Annotated[str, no_longer_than("max_prompt_chars", "characters")] | None = None
    # A turn shows the fields of its role, as OpenAI's messages do: no null tool fields.
    tool_calls: list[MessageToolCall] | None = Field(
        None, min_length=1, max_length=MAX_TOOLS, exclude_if=_is_none
    )
    tool_call_id: Identifier | None = Field(
        None, description="The call a tool message answers", exclude_if=_is_none
    )

    @model_validator(mode="after")
    def _fits_role(self) -> Self:
        if self.tool_calls is not None and self.role != Role.ASSISTANT:
            raise ValueError("tool_calls: only an assistant message makes tool calls")
        if (self.tool_call_id is not None) != (self.role == Role.TOOL):
            raise ValueError("tool_call_id: a tool message needs one, and only a tool message")
        if self.role == Role.TOOL:
            if self.content is None:
                raise ValueError("content: a tool message carries the function's result")
        elif (self.content is None or not self.content.strip()) and (
            self.role != Role.ASSISTANT or self.tool_calls is None
        ):
            raise ValueError("content: must not be empty or only whitespace")
        return self

    @property
    def size(self) -> int:
        """Characters it holds, towards the prompt's limit."""
        calls = sum(len(call.function.arguments) for call in self.tool_calls or ())
        return len(self.content or "") + calls

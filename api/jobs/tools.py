"""Function tools a chat job offers the model, and how it may use them: OpenAI's `tools`,
`tool_choice` and `parallel_tool_calls`, as vLLM's server takes them.

The tools go into the model's chat template (as vLLM passes them), so a template that knows
tools shows them to the model. A named function or `required` constrains the output, through
the engine's structured outputs, to that function's arguments or to a JSON list of calls,
whatever the model; `auto` lets the model choose, and needs vLLM's tool parser for the served
model's call format (the `tool_call_parser` setting). The worker reads the calls
(worker/tool_calls.py); vqueue/contract/tools.py is what the two share.
"""

from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from api.core.serving_settings import serving_settings
from api.jobs.structured_outputs import no_nul_anywhere
from vqueue.contract.tools import AUTO, NAMED, NONE, REQUIRED, ToolUse

# OpenAI's rule for a function's name.
FunctionName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
MAX_TOOLS = 128


class FunctionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: FunctionName
    description: str | None = Field(None, max_length=8192)
    parameters: dict[str, Any] | None = Field(
        None, description="A JSON schema of the arguments; None: no arguments"
    )
    strict: bool | None = None

    @model_validator(mode="after")
    def _no_nul(self) -> Self:
        # A schema becomes a grammar, which cannot hold NUL; a description goes to the model.
        no_nul_anywhere(self.parameters)
        no_nul_anywhere(self.description)
        return self


class FunctionTool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    function: FunctionSpec


class ChosenFunction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: FunctionName


class NamedToolChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    function: ChosenFunction


class ToolFields(BaseModel):
    """The tool fields of a chat job."""

    tools: list[FunctionTool] | None = Field(
        None, max_length=MAX_TOOLS, description="Functions the model may call (chat jobs)"
    )
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = Field(
        None,
        description="none, auto (the default with tools: needs the tool_call_parser setting), "
        "required, or one function by name",
    )
    parallel_tool_calls: bool = Field(True, description="false: at most one call per answer")

    @model_validator(mode="after")
    def _tool_choice_fits(self) -> Self:
        if not self.tools:
            self.tools = None  # `"tools": []`, which client libraries send, offers none
            if self.tool_choice not in (None, NONE):
                raise ValueError("tool_choice: needs `tools` to choose from")
            return self
        if isinstance(self.tool_choice, NamedToolChoice):
            name = self.tool_choice.function.name
            if name not in {tool.function.name for tool in self.tools}:
                raise ValueError(f"tool_choice: names {name!r}, which is not one of the tools")
        elif self.tool_choice in (None, AUTO) and serving_settings().tool_call_parser is None:
            raise ValueError(
                "tool_choice: 'auto' (the default with tools) needs a tool parser for the served "
                "model, which this service does not have (its tool_call_parser setting); name a "
                "function, or use 'required' or 'none'"
            )
        return self

    def tool_use(self) -> ToolUse | None:
        if not self.tools:
            return None
        tools = [tool.model_dump(mode="json", exclude_none=True) for tool in self.tools]
        if isinstance(self.tool_choice, NamedToolChoice):
            return ToolUse(tools, self.tool_choice.function.name, True, self.parallel_tool_calls)
        return ToolUse(tools, self.tool_choice or AUTO, False, self.parallel_tool_calls)

    def tool_constraint(self) -> dict[str, Any] | None:
        """The JSON schema the output must match, as vLLM builds it: a named function's
        arguments, or for `required` a list of at least one call of any of the tools."""
        use = self.tool_use()
        if use is None or use.mode not in (NAMED, REQUIRED):
            return None
        assert self.tools is not None
        specs = {tool.function.name: tool.function.parameters for tool in self.tools}
        if use.mode == NAMED:
            return _arguments(specs[use.choice])
        # Each function's `$defs` move to the root, where their `#/$defs/...` references
        # resolve once the schema is nested (as vLLM does; a name defined twice differently
        # is refused).
        defs: dict[str, Any] = {}
        options = []
        for name, parameters in specs.items():
            own = dict(parameters or {})
            for key, schema in (own.pop("$defs", None) or {}).items():
                if defs.setdefault(key, schema) != schema:
                    raise ValueError(f"tools: `$defs` name {key!r} has two different schemas")
            options.append(
                {
                    "properties": {
                        "name": {"type": "string", "enum": [name]},
                        "parameters": _arguments(own),
                    },
                    "required": ["name", "parameters"],
                }
            )
        calls: dict[str, Any] = {
            "type": "array",
            "minItems": 1,
            "items": {"type": "object", "anyOf": options},
        }
        if not use.parallel:
            calls["maxItems"] = 1
        if defs:
            calls["$defs"] = defs
        return calls


def _arguments(parameters: dict[str, Any] | None) -> dict[str, Any]:
    # No parameters still means a JSON object of arguments.
    return parameters if parameters else {"type": "object", "properties": {}}

"""Structured outputs: a constraint the engine enforces on what a job may generate (a JSON
schema, any JSON object, a regular expression, one of given choices, or a grammar), under
vLLM's own names (its `structured_outputs` request field and SamplingParams).

Checked here is what can be checked without the engine: one kind of constraint, the shapes,
the sizes, and no NUL (which vLLM refuses in a regex, and grammar backends cannot take).
Whether the engine's grammar backend can compile a schema, regex or grammar is known only to
the engine: a job it refuses fails with the engine's reason, which /v1 answers as a 400.
"""

from typing import Annotated, Any, Self

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

# A constraint is stored with its job; a schema or grammar of a few pages is plenty.
MAX_CONSTRAINT_BYTES = 65_536
_KINDS = ("json", "regex", "choice", "grammar", "json_object")


def no_nul_anywhere(value: Any) -> Any:
    # In a key or a string, however deep.
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if isinstance(value, dict):
        for key, item in value.items():
            no_nul_anywhere(key)
            no_nul_anywhere(item)
    elif isinstance(value, list):
        for item in value:
            no_nul_anywhere(item)
    return value


Pattern = Annotated[str, StringConstraints(min_length=1), AfterValidator(no_nul_anywhere)]
Choice = Annotated[
    str, StringConstraints(min_length=1, max_length=1024), AfterValidator(no_nul_anywhere)
]


class StructuredOutputs(BaseModel):
    """Exactly one of `json`, `json_object`, `regex`, `choice` or `grammar`, with vLLM's
    optional whitespace settings."""

    model_config = ConfigDict(extra="forbid")

    json_schema: dict[str, Any] | None = Field(
        None, alias="json", description="A JSON schema the output must match"
    )
    json_object: bool | None = Field(None, description="true: any JSON object")
    regex: Pattern | None = Field(None, description="A regular expression the output matches")
    choice: list[Choice] | None = Field(
        None, min_length=1, max_length=1024, description="The output is one of these strings"
    )
    grammar: Pattern | None = Field(None, description="A context-free grammar (EBNF or Lark)")
    disable_any_whitespace: bool = False
    disable_additional_properties: bool = False
    whitespace_pattern: Pattern | None = None

    @field_validator("json_schema", mode="before")
    @classmethod
    def _schema_object(cls, value: Any) -> Any:
        # vLLM takes a schema as an object or as its JSON text; stored as the object.
        if isinstance(value, str):
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"is not valid JSON: {exc}") from None
        if value is not None and not isinstance(value, dict):
            raise ValueError("must be a JSON schema (an object)")
        return no_nul_anywhere(value)

    @field_validator("json_object")
    @classmethod
    def _only_true(cls, value: bool | None) -> bool | None:
        if value is False:
            raise ValueError("must be true if given; leave structured_outputs out instead")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        given = [kind for kind in _KINDS if self.kind_value(kind) is not None]
        if len(given) != 1:
            found = ", ".join(given) if given else "none"
            raise ValueError(f"give exactly one of {', '.join(_KINDS)} (found: {found})")
        size = len(orjson.dumps(self.stored()))
        if size > MAX_CONSTRAINT_BYTES:
            raise ValueError(f"is {size} bytes as JSON, over {MAX_CONSTRAINT_BYTES}")
        return self

    def kind_value(self, kind: str) -> Any:
        return self.json_schema if kind == "json" else getattr(self, kind)

    def stored(self) -> dict[str, Any]:
        """Under vLLM's names, without what was left out: what the worker passes on."""
        return self.model_dump(mode="json", by_alias=True, exclude_defaults=True)

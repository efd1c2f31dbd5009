"""Tool requests as the API checks them and the worker reads their calls (no engine): the
constraint a named or required choice puts on the output, and the calls read back from it."""

import json
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from api.core.serving_settings import _serving
from api.jobs.schemas import JobCreate
from vqueue.contract.tools import ToolCalls, ToolUse
from vqueue.settings import Settings
from worker.tool_calls import ToolCallReader

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
NAMED = {"type": "function", "function": {"name": "get_weather"}}
TURN = [{"role": "user", "content": "Weather in Rome?"}]


@pytest.fixture(autouse=True)
def no_tool_parser() -> Iterator[None]:
    """A service whose settings name no tool parser."""
    token = _serving.set(Settings(tool_call_parser=None))
    yield
    _serving.reset(token)


def job(**fields: Any) -> JobCreate:
    return JobCreate.model_validate({"messages": TURN, "tools": [WEATHER], **fields})


def test_a_named_function_constrains_the_output_to_its_arguments() -> None:
    made = job(tool_choice=NAMED)
    assert made.structured_outputs is not None
    assert made.sampling()["structured_outputs"] == {"json": WEATHER["function"]["parameters"]}
    assert made.tools_json() == {
        "tools": [WEATHER],
        "choice": "get_weather",
        "named": True,
        "parallel": True,
    }


def test_required_constrains_to_a_list_of_calls_with_shared_definitions_at_the_root() -> None:
    nested = {
        "type": "function",
        "function": {
            "name": "book",
            "parameters": {
                "type": "object",
                "properties": {"when": {"$ref": "#/$defs/Date"}},
                "$defs": {"Date": {"type": "string"}},
            },
        },
    }
    made = job(tools=[WEATHER, nested], tool_choice="required", parallel_tool_calls=False)
    schema = made.sampling()["structured_outputs"]["json"]
    assert schema["minItems"] == 1
    assert schema["maxItems"] == 1  # parallel_tool_calls: false
    assert schema["$defs"] == {"Date": {"type": "string"}}
    options = schema["items"]["anyOf"]
    assert [option["properties"]["name"]["enum"] for option in options] == [
        ["get_weather"],
        ["book"],
    ]
    assert "$defs" not in options[1]["properties"]["parameters"]
    # The definition offered to the model keeps its own.
    assert made.tools_json()["tools"][1]["function"]["parameters"]["$defs"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"tools": [], "tool_choice": "required"}, "tool_choice: needs `tools`"),
        ({"tool_choice": {"type": "function", "function": {"name": "x"}}}, "not one of"),
        ({}, r"'auto' \(the default with tools\) needs a tool parser"),
        ({"tool_choice": "auto"}, "needs a tool parser"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"tool_choice": NAMED, "structured_outputs": {"regex": "a"}}, "cannot be combined"),
        ({"tool_choice": "none", "messages": None, "prompt": "Hi"}, "only a chat job"),
        ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "name"),
    ],
)
def test_tool_requests_that_cannot_run_are_refused_by_name(
    fields: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValidationError, match=named):
        job(**fields)


def test_tools_with_auto_need_the_services_tool_parser() -> None:
    token = _serving.set(Settings(tool_call_parser="pythonic"))
    try:
        assert job().tools_json()["choice"] == "auto"  # type: ignore[index]
    finally:
        _serving.reset(token)


@pytest.mark.parametrize(
    ("role_fields", "named"),
    [
        ({"role": "tool", "content": "22C"}, "tool_call_id"),
        ({"role": "user", "content": "x", "tool_call_id": "c1"}, "tool_call_id"),
        ({"role": "assistant"}, "content"),
        (
            {"role": "user", "content": "x", "tool_calls": [NAMED | {"id": "c"}]},
            "tool_calls",
        ),
    ],
)
def test_messages_of_a_tool_conversation_are_checked_by_role(
    role_fields: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValidationError, match=named):
        job(messages=[role_fields], tool_choice="none")


def test_a_tool_conversation_is_stored_as_sent() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    turns = [
        *TURN,
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": ""},  # a result may be empty
    ]
    assert job(messages=turns, tool_choice="none").messages_json() == turns


def reader() -> ToolCallReader:
    return ToolCallReader(None, lambda: None)


def use(choice: str, *, named: bool = False, parallel: bool = True) -> ToolUse:
    return ToolUse([WEATHER], choice, named, parallel)


def test_a_named_calls_arguments_are_the_text() -> None:
    read = reader().read("job-1", 1, '{"city": "Rome"}', use("get_weather", named=True))
    assert read is not None
    assert [(c.name, c.arguments) for c in read.calls] == [("get_weather", '{"city": "Rome"}')]
    assert read.content is None
    # Stored and read back the same, ids included.
    assert ToolCalls.decode(read.encode()) == read


def test_required_calls_are_read_from_the_list_and_cut_output_has_none() -> None:
    calls = [{"name": "get_weather", "parameters": {"city": city}} for city in ("Ré", "Nice")]
    text = json.dumps(calls)
    read = reader().read("job-1", 2, text, use("required"))
    assert read is not None
    assert [c.arguments for c in read.calls] == ['{"city": "Ré"}', '{"city": "Nice"}']
    assert len({c.id for c in read.calls}) == 2
    single = reader().read("job-1", 2, text, use("required", parallel=False))
    assert single is not None
    assert len(single.calls) == 1
    cut = reader().read("job-1", 2, text[:30], use("required"))
    assert cut is not None
    assert cut.calls == []


def test_auto_without_a_parser_keeps_the_text_and_none_reads_nothing() -> None:
    read = reader().read("job-1", 1, "[get_weather(city='Rome')]", use("auto"))
    assert read == ToolCalls([], "[get_weather(city='Rome')]")
    assert reader().read("job-1", 1, "text", use("none")) is None

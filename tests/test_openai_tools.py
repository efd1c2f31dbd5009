"""Function calling through /v1 as clients nobody here wrote do it, on the running stack: the
openai SDK (named, auto, streamed, and the turn that answers a call), LangChain's
`bind_tools`, and `instructor`'s tool mode. The suite's stack reads `auto` calls with vLLM's
pythonic parser; the default model's template shows no tools, so an example turn leads it."""

import json
import os
from typing import Any

import httpx
import instructor
import openai
from langchain_core.tools import tool
from pydantic import BaseModel

from tests.helpers import AUTH, TOOL_TURNS, WEATHER_TOOL
from tests.test_real_clients import chat_model
from vqueue.settings import Settings

WEATHER: Any = WEATHER_TOOL
EXAMPLE: Any = TOOL_TURNS


def test_a_named_call_whole_and_streamed_and_its_answer(
    oai: openai.OpenAI, settings: Settings, base_url: str
) -> None:
    named: Any = {"type": "function", "function": {"name": "get_weather"}}
    asked: Any = {
        "model": settings.model_name,
        "messages": EXAMPLE,
        "tools": [WEATHER],
        "tool_choice": named,
        "max_tokens": 40,
        "temperature": 0,
    }
    reply = oai.chat.completions.create(**asked)
    choice = reply.choices[0]
    assert choice.finish_reason == "stop"  # as OpenAI ends a named call
    (call,) = choice.message.tool_calls or []
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert set(json.loads(call.function.arguments)) == {"city"}  # the schema holds
    # The job shows what it offered and the call read from its text, with the same id.
    job = httpx.get(f"{base_url}/jobs/{reply.id.removeprefix('chatcmpl-')}", headers=AUTH).json()
    assert job["tool_choice"] == named
    assert job["tools"] == [WEATHER]
    assert job["tool_calls"] == [call.model_dump()]
    # Streamed: the arguments come as deltas of one call, named in the first.
    stream = oai.chat.completions.create(**asked, stream=True)
    deltas = [c.choices[0].delta.tool_calls for c in stream if c.choices and c.choices[0].delta]
    parts = [part for delta in deltas if delta for part in delta]
    assert parts[0].function is not None
    assert parts[0].function.name == "get_weather"
    assert parts[0].id
    assert {part.index for part in parts} == {0}
    assert "".join(p.function.arguments or "" for p in parts if p.function) == (
        call.function.arguments
    )
    # The conversation goes on with the call and its result.
    answer = oai.chat.completions.create(
        model=settings.model_name,
        messages=[
            *EXAMPLE,
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 24 C"},
        ],
        tools=[WEATHER],
        tool_choice="none",
        max_tokens=12,
        temperature=0,
    )
    assert answer.choices[0].message.content
    assert answer.choices[0].message.tool_calls is None


def test_auto_reads_the_models_call_whole_and_streamed(
    oai: openai.OpenAI, settings: Settings
) -> None:
    asked: Any = {"model": settings.model_name, "messages": EXAMPLE, "tools": [WEATHER]}
    reply = oai.chat.completions.create(**asked, max_tokens=40, temperature=0)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "get_weather",
        {"city": "Rome"},
    )
    # The SDK's stream helper adds the deltas up into the same message.
    with oai.chat.completions.stream(**asked, max_tokens=40, temperature=0) as stream:
        final = stream.get_final_completion()
    streamed = final.choices[0]
    assert streamed.finish_reason == "tool_calls"
    assert [c.function.arguments for c in streamed.message.tool_calls or []] == [
        call.function.arguments
    ]


def test_a_model_that_does_not_call_answers_in_text(oai: openai.OpenAI, settings: Settings) -> None:
    reply = oai.chat.completions.create(
        model=settings.model_name,
        messages=[{"role": "user", "content": "Say hello."}],
        tools=[WEATHER],
        max_tokens=8,
        temperature=0,
    )
    assert reply.choices[0].message.tool_calls is None
    assert reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "length"


def test_langchain_binds_a_tool_and_gets_its_call(base_url: str, settings: Settings) -> None:
    @tool
    def get_weather(city: str) -> str:
        """The weather of a city."""
        return "sunny"

    model = chat_model(base_url, settings, max_tokens=40)
    bound = model.bind_tools([get_weather], tool_choice="get_weather")
    reply = bound.invoke(EXAMPLE)
    (call,) = reply.tool_calls  # type: ignore[attr-defined]
    assert call["name"] == "get_weather"
    assert isinstance(call["args"].get("city"), str)


class Weather(BaseModel):
    city: str
    celsius: int


def test_instructor_fills_a_model_through_a_tool_call(settings: Settings, base_url: str) -> None:
    client = instructor.from_openai(
        openai.OpenAI(
            base_url=f"{base_url}/v1", api_key=os.environ["VQUEUE_API_KEY"], max_retries=0
        ),
        mode=instructor.Mode.TOOLS,
    )
    weather = client.chat.completions.create(
        model=settings.model_name,
        response_model=Weather,
        messages=[{"role": "user", "content": "It is 21 degrees in Lyon. Extract it."}],
        max_tokens=40,
        temperature=0,
        max_retries=0,
    )
    assert isinstance(weather, Weather)

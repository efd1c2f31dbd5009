"""The OpenAI Agents SDK (`openai-agents`) runs agents against the stack's Responses API, as
its users point it at their own server: a run to its final output, streamed, a second turn
that follows the first by its response id, and an agent that calls a function tool."""

import asyncio
import os
from typing import Any

import openai
from agents import (
    Agent,
    ModelSettings,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)

from vqueue.settings import Settings


def _agent(base_url: str, settings: Settings, client: openai.AsyncOpenAI) -> Agent:
    return Agent(
        name="greeter",
        instructions="You greet people briefly.",
        model=OpenAIResponsesModel(model=settings.model_name, openai_client=client),
        # Enough for the model to end by itself: the SDK takes a cut-off answer for an error.
        model_settings=ModelSettings(max_tokens=400, temperature=0),
    )


def _client(base_url: str) -> openai.AsyncOpenAI:
    set_tracing_disabled(True)  # its traces would go to OpenAI's servers
    return openai.AsyncOpenAI(
        base_url=f"{base_url}/v1", api_key=os.environ["VQUEUE_API_KEY"], max_retries=0
    )


def test_an_agent_runs_to_its_final_output(base_url: str, settings: Settings) -> None:
    async def run() -> Any:
        async with _client(base_url) as client:
            return await Runner.run(_agent(base_url, settings, client), "Say hello to Ada.")

    result = asyncio.run(run())
    assert isinstance(result.final_output, str)
    assert result.final_output
    [response] = result.raw_responses
    assert response.response_id is not None
    assert response.response_id.startswith("resp_")
    assert response.usage.output_tokens > 0


def test_an_agent_streams_and_a_second_turn_follows_the_first(
    base_url: str, settings: Settings
) -> None:
    async def run() -> tuple[str, str, str]:
        async with _client(base_url) as client:
            agent = _agent(base_url, settings, client)
            streamed = Runner.run_streamed(agent, "Say hello to Ada.")
            deltas = []
            async for event in streamed.stream_events():
                if event.type == "raw_response_event" and event.data.type == (
                    "response.output_text.delta"
                ):
                    deltas.append(event.data.delta)
            first = streamed.raw_responses[0].response_id
            assert first is not None
            # The server keeps the conversation: the next turn names the last response.
            second = await Runner.run(agent, "Say hello to Grace.", previous_response_id=first)
            followed = second.raw_responses[0].response_id
            made = await client.responses.retrieve(str(followed))
            assert made.previous_response_id == first
            return "".join(deltas), str(streamed.final_output), str(second.final_output)

    text, final, second = asyncio.run(run())
    assert text
    assert text == final
    assert second


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


def test_an_agent_calls_a_function_tool(base_url: str, settings: Settings) -> None:
    async def run() -> Any:
        async with _client(base_url) as client:
            agent = Agent(
                name="forecaster",
                instructions="Answer with the weather tool.",
                model=OpenAIResponsesModel(model=settings.model_name, openai_client=client),
                tools=[get_weather],
                # The engine holds the model to a call (greedy: sampled, the call's arguments
                # can run long); the tool's answer is the agent's.
                model_settings=ModelSettings(tool_choice="required", max_tokens=128, temperature=0),
                tool_use_behavior="stop_on_first_tool",
            )
            return await Runner.run(agent, "What is the weather in Oslo?")

    result = asyncio.run(run())
    assert str(result.final_output).startswith("Sunny in ")
    [response] = result.raw_responses
    [call] = response.output
    assert call.type == "function_call"
    assert call.name == "get_weather"

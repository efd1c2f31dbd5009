"""Function tools on the Responses API, as chat's tools (api/jobs/tools.py runs them).

The Responses API spells them flat (`{"type": "function", "name", "parameters"}`), its
`tool_choice` names a function as `{"type": "function", "name"}`, a call the model made comes
back as an output item of type `function_call`, and the client answers it with an input item
of type `function_call_output`. Here each maps onto its chat counterpart, so the calls are
read by the same parser, constrained by the same grammar, and stored the same way.
"""

from typing import Any

from api.openai.requests import OpenAIFieldError
from vqueue.contract.tools import ToolCall

_FUNCTION_KEYS = {"type", "name", "description", "parameters", "strict"}
_CHOICES = ("auto", "none", "required")


def chat_tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise OpenAIFieldError("tools", "must be a list of function tools")
    made = []
    for i, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind != "function":
            raise OpenAIFieldError(
                f"tools[{i}].type",
                f"{kind!r} is not supported: only function tools (the client runs them)",
            )
        extra = set(tool) - _FUNCTION_KEYS
        if extra:
            raise OpenAIFieldError(f"tools[{i}].{sorted(extra)[0]}", "is not supported")
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise OpenAIFieldError(f"tools[{i}].name", "must be the function's name")
        function = {key: tool.get(key) for key in ("name", "description", "parameters", "strict")}
        made.append(
            {"type": "function", "function": {k: v for k, v in function.items() if v is not None}}
        )
    return made


def chat_tool_choice(choice: Any) -> Any:
    if choice in _CHOICES:
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        if not isinstance(choice.get("name"), str) or set(choice) - {"type", "name"}:
            raise OpenAIFieldError("tool_choice", "a function choice is {type, name}")
        return {"type": "function", "function": {"name": choice["name"]}}
    raise OpenAIFieldError("tool_choice", "must be auto, none, required or {type: function, name}")


def call_turn(item: dict[str, Any], where: str, turns: list[dict[str, Any]]) -> None:
    """A `function_call` input item (a call the model made earlier) joins the assistant turn
    before it, or makes one."""
    for key in ("call_id", "name", "arguments"):
        if not isinstance(item.get(key), str):
            raise OpenAIFieldError(f"{where}.{key}", "must be a string")
    call = {
        "id": item["call_id"],
        "type": "function",
        "function": {"name": item["name"], "arguments": item["arguments"]},
    }
    if turns and turns[-1]["role"] == "assistant":
        turns[-1].setdefault("tool_calls", []).append(call)
    else:
        turns.append({"role": "assistant", "content": None, "tool_calls": [call]})


def output_turn(item: dict[str, Any], where: str, text: Any) -> dict[str, Any]:
    """A `function_call_output` input item: the tool's answer to a call, as a tool message."""
    if not isinstance(item.get("call_id"), str):
        raise OpenAIFieldError(f"{where}.call_id", "must be a string")
    return {"role": "tool", "tool_call_id": item["call_id"], "content": text}


def function_call_item(call: ToolCall) -> dict[str, Any]:
    return {
        "id": "fc_" + call.id.removeprefix("chatcmpl-tool-"),
        "type": "function_call",
        "call_id": call.id,
        "name": call.name,
        "arguments": call.arguments,
        "status": "completed",
    }


def echoed_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tools as the Response object shows them (OpenAI's defaults filled in)."""
    return [
        {
            "type": "function",
            "name": tool["name"],
            "description": tool.get("description"),
            "parameters": tool.get("parameters"),
            "strict": tool.get("strict", True),
        }
        for tool in tools
    ]

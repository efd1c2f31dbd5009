"""How OpenAI request bodies become job fields (api/openai/requests.py), without the stack."""

from typing import Any

import pytest

from api.jobs.schemas import JobCreate
from api.openai.requests import CHAT_COMPLETIONS, COMPLETIONS, OpenAIFieldError, job_fields

MODELS = {"m"}
CHAT: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def fields(body: dict[str, Any], endpoint: str = CHAT_COMPLETIONS) -> dict[str, Any]:
    return job_fields(endpoint, body, MODELS, allow_stream=True)


def test_what_vllms_benchmark_sends_is_taken_and_null_means_the_default() -> None:
    body = {
        "model": "m",
        "prompt": "Once",
        "repetition_penalty": 1.0,
        "max_tokens": 16,
        "logprobs": None,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,
    }
    got = fields(body, COMPLETIONS)
    assert got == {
        "prompt": "Once",
        "repetition_penalty": 1.0,
        "max_tokens": 16,
        "ignore_eos": True,
    }
    job = JobCreate.model_validate(got)
    assert job.sampling()["repetition_penalty"] == 1.0


def test_explicit_nulls_are_the_defaults_of_every_known_field() -> None:
    nulls = dict.fromkeys(
        ["temperature", "top_p", "n", "stop", "seed", "logprobs", "top_logprobs", "user",
         "tools", "tool_choice", "response_format", "logit_bias", "max_tokens", "top_k",
         "min_p", "stop_token_ids", "stream", "stream_options"]
    )  # fmt: skip
    job = JobCreate.model_validate(fields({**CHAT, **nulls}))
    assert job.temperature == 1.0
    assert job.max_tokens == 256
    assert job.stop is None


def test_vllm_sampling_fields_reach_the_job() -> None:
    extras = {
        "min_p": 0.05,
        "min_tokens": 2,
        "top_k": 20,
        "stop_token_ids": [2, 7],
        "skip_special_tokens": False,
        "include_stop_str_in_output": True,
        "max_completion_tokens": 9,
    }
    params = JobCreate.model_validate(fields({**CHAT, **extras})).sampling()
    assert {key: params[key] for key in extras if key != "max_completion_tokens"} == {
        key: value for key, value in extras.items() if key != "max_completion_tokens"
    }
    assert params["max_tokens"] == 9


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"n": 2}, "n"),
        ({"best_of": 2}, "best_of"),
        ({"n": True}, "n"),  # a flag is not the number 1
        ({"frobnicate": None}, "frobnicate"),  # unknown to OpenAI and vLLM: refused, even null
        ({"frobnicate": 1}, "frobnicate"),
    ],
)
def test_fields_not_honoured_are_refused_by_name(change: dict[str, Any], param: str) -> None:
    with pytest.raises(OpenAIFieldError) as raised:
        fields({**CHAT, **change})
    assert raised.value.param == param


def test_defaults_of_fields_not_honoured_yet_are_accepted() -> None:
    defaults = {"n": 1, "echo": False, "logprobs": False, "top_logprobs": 0, "best_of": 1}
    assert fields({**CHAT, **defaults}) == fields(CHAT)
    # As client libraries send it: no tools offered.
    assert JobCreate.model_validate(fields({**CHAT, "tools": []})).tools_json() is None


@pytest.mark.parametrize(
    ("endpoint", "body", "stored"),
    [
        # A completion's `logprobs` is the count of alternatives; chat's is a flag, with
        # `top_logprobs` the count, which alone (as in vLLM) asks for nothing.
        (COMPLETIONS, {"logprobs": 0}, 0),
        (COMPLETIONS, {"logprobs": 5}, 5),
        (CHAT_COMPLETIONS, {"logprobs": True}, 0),
        (CHAT_COMPLETIONS, {"logprobs": True, "top_logprobs": 20}, 20),
        (CHAT_COMPLETIONS, {"logprobs": False, "top_logprobs": 3}, None),
        (CHAT_COMPLETIONS, {"top_logprobs": 3}, None),
    ],
)
def test_logprobs_become_the_jobs_count_of_alternatives(
    endpoint: str, body: dict[str, Any], stored: int | None
) -> None:
    base = CHAT if endpoint == CHAT_COMPLETIONS else {"model": "m", "prompt": "Once"}
    params = JobCreate.model_validate(fields({**base, **body}, endpoint)).sampling()
    assert params["logprobs"] == stored


@pytest.mark.parametrize(
    ("endpoint", "body", "param"),
    [
        (COMPLETIONS, {"logprobs": 21}, "logprobs"),
        (COMPLETIONS, {"logprobs": -1}, "logprobs"),
        (COMPLETIONS, {"logprobs": True}, "logprobs"),
        (COMPLETIONS, {"logprobs": 2, "echo": True}, "echo"),
        (CHAT_COMPLETIONS, {"logprobs": 2}, "logprobs"),
        (CHAT_COMPLETIONS, {"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        (CHAT_COMPLETIONS, {"logprobs": True, "top_logprobs": "2"}, "top_logprobs"),
        (COMPLETIONS, {"top_logprobs": 2}, "top_logprobs"),  # chat's field only
    ],
)
def test_bad_logprobs_are_refused_by_name(endpoint: str, body: dict[str, Any], param: str) -> None:
    base = CHAT if endpoint == CHAT_COMPLETIONS else {"model": "m", "prompt": "Once"}
    with pytest.raises(OpenAIFieldError) as raised:
        fields({**base, **body}, endpoint)
    assert raised.value.param == param


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"min_tokens": 20, "max_tokens": 10}, "min_tokens"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"stop_token_ids": ["2"]}, "stop_token_ids"),
        ({"min_p": "0.1"}, "min_p"),
        ({"skip_special_tokens": 1}, "skip_special_tokens"),
    ],
)
def test_bad_vllm_sampling_values_are_refused(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        JobCreate.model_validate(fields({**CHAT, **change}))


SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


@pytest.mark.parametrize(
    ("change", "stored"),
    [
        ({"response_format": {"type": "text"}}, None),
        ({"response_format": {"type": "json_object"}}, {"json_object": True}),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "a", "schema": SCHEMA},
                }
            },
            {"json": SCHEMA},
        ),
        # vLLM's own field, and its whitespace setting beside response_format's constraint.
        ({"structured_outputs": {"choice": ["yes", "no"]}}, {"choice": ["yes", "no"]}),
        (
            {
                "response_format": {"type": "json_object"},
                "structured_outputs": {"disable_any_whitespace": True},
            },
            {"json_object": True, "disable_any_whitespace": True},
        ),
        # A schema given as its JSON text is stored as the object.
        ({"structured_outputs": {"json": '{"type": "object"}'}}, {"json": {"type": "object"}}),
    ],
)
def test_response_format_and_structured_outputs_become_one_stored_constraint(
    change: dict[str, Any], stored: dict[str, Any] | None
) -> None:
    for endpoint, body in ((CHAT_COMPLETIONS, CHAT), (COMPLETIONS, {"model": "m", "prompt": "x"})):
        job = JobCreate.model_validate(fields({**body, **change}, endpoint))
        assert job.sampling()["structured_outputs"] == stored


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"response_format": "json_object"}, "response_format"),
        ({"response_format": {"type": "json_schema"}}, "response_format"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "a"}}},
            "response_format",
        ),
        (
            {"response_format": {"type": "json_object"}, "structured_outputs": {"regex": "a+"}},
            "found: regex, json_object",
        ),
        ({"structured_outputs": {}}, "found: none"),
        ({"structured_outputs": {"choice": []}}, "structured_outputs.choice"),
        ({"structured_outputs": {"json": "{not json"}}, "structured_outputs.json"),
        ({"structured_outputs": {"json": [1]}}, "structured_outputs.json"),
        ({"structured_outputs": {"json": {"a\x00": 1}}}, "structured_outputs.json"),
        ({"structured_outputs": {"regex": "a\x00"}}, "structured_outputs.regex"),
        ({"structured_outputs": {"json_object": False}}, "structured_outputs.json_object"),
        ({"structured_outputs": {"guided_json": {}}}, "structured_outputs.guided_json"),
        ({"structured_outputs": {"grammar": "x" * 70_000}}, "over 65536"),
        ({"structured_outputs": "json"}, "structured_outputs"),
    ],
)
def test_bad_constraints_are_refused_naming_what_is_wrong(
    change: dict[str, Any], where: str
) -> None:
    with pytest.raises(ValueError, match=where):
        JobCreate.model_validate(fields({**CHAT, **change}))


def test_logit_bias_is_kept_clamped_as_vllm_clamps_it() -> None:
    job = JobCreate.model_validate(fields({**CHAT, "logit_bias": {"42": 250, "7": -3.5}}))
    assert job.sampling()["logit_bias"] == {"42": 100.0, "7": -3.5}


@pytest.mark.parametrize(
    "bias", [{"x": 1}, {"-1": 1}, {"1": "5"}, {"1": True}, {"1": float("nan")}, [1, 2]]
)
def test_bad_logit_bias_is_refused(bias: Any) -> None:
    with pytest.raises(ValueError, match="logit_bias"):
        JobCreate.model_validate(fields({**CHAT, "logit_bias": bias}))


def test_echo_is_a_flag_and_not_for_batch_files() -> None:
    body = {"model": "m", "prompt": "x", "echo": True}
    assert "echo" not in job_fields(COMPLETIONS, body, MODELS, allow_stream=True)
    with pytest.raises(OpenAIFieldError, match="batch files"):
        job_fields(COMPLETIONS, body, MODELS)
    with pytest.raises(OpenAIFieldError, match="true or false"):
        fields({**CHAT, "echo": 1})


@pytest.mark.parametrize(
    ("prompt", "stored"),
    [
        ("text", {"prompt": "text"}),
        (["text"], {"prompt": "text"}),
        ([5, 6, 7], {"prompt_token_ids": [5, 6, 7]}),
        ([[5, 6, 7]], {"prompt_token_ids": [5, 6, 7]}),
    ],
)
def test_a_prompt_is_text_or_token_ids(prompt: Any, stored: dict[str, Any]) -> None:
    got = job_fields(COMPLETIONS, {"model": "m", "prompt": prompt}, MODELS)
    assert {key: got[key] for key in ("prompt", "prompt_token_ids") if key in got} == stored


@pytest.mark.parametrize("prompt", [[], [True, 2], ["a", "b"], [[1], [2]], [[]], 5, [1.5]])
def test_what_is_no_one_prompt_is_refused(prompt: Any) -> None:
    with pytest.raises(OpenAIFieldError, match="prompt"):
        job_fields(COMPLETIONS, {"model": "m", "prompt": prompt}, MODELS)

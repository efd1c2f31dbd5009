"""Request and response bodies of the jobs API, separate from the table definitions."""

import math
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, Self

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from api.core.serving_settings import at_most, no_longer_than, serving_settings
from api.jobs.messages import Message
from api.jobs.structured_outputs import StructuredOutputs
from api.jobs.tools import ToolFields
from api.jobs.waiting import QueueWait
from api.webhooks.schemas import JobWebhook
from db.states import JobStatus
from vqueue.contract.logprobs import MAX_LOGPROBS


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only whitespace")
    return value


# Any text may hold NUL, as in vLLM's server: db/stored_text.py stores it.
NonEmptyText = Annotated[
    str,
    StringConstraints(min_length=1),
    no_longer_than("max_prompt_chars", "characters"),
    AfterValidator(_not_blank),
]
# A token id as a JSON object's key; the engine checks it against the vocabulary.
TokenId = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,10}$")]
StopString = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class SamplingFields(BaseModel):
    """Sampling parameters with the defaults a job runs with; stored whole on the job."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: Annotated[int, at_most("max_output_tokens")] = Field(256, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=1, le=100_000, description="None: no top-k cut-off")
    stop: Annotated[list[StopString], no_longer_than("max_stop_strings", "strings")] | None = None
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    ignore_eos: bool = False
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    # vLLM's own sampling parameters, as its OpenAI server takes them.
    repetition_penalty: float = Field(1.0, gt=0.0, le=100.0, description="1: no penalty")
    min_p: float = Field(0.0, ge=0.0, le=1.0, description="0: no min-p cut-off")
    min_tokens: int = Field(0, ge=0, description="Tokens before EOS or a stop may end it")
    stop_token_ids: list[Annotated[StrictInt, Field(ge=0, le=2**31 - 1)]] | None = Field(
        None, max_length=256, description="Token ids that end the output, as stop strings do"
    )
    skip_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    logit_bias: dict[TokenId, StrictFloat | StrictInt] | None = Field(
        None,
        max_length=1024,
        description="Token id (as a string) -> a bias added to its logit; as in vLLM, values "
        "are clamped to -100..100",
    )
    structured_outputs: StructuredOutputs | None = Field(
        None, description="A constraint the engine enforces on the output (vLLM's field)"
    )
    logprobs: int | None = Field(
        None,
        ge=0,
        le=MAX_LOGPROBS,
        description="Log the probability of each output token and of this many alternatives "
        "(0: the sampled token's alone); None: none",
    )

    @field_validator("logit_bias")
    @classmethod
    def _clamped(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return None
        if not all(math.isfinite(bias) for bias in value.values()):
            raise ValueError("biases must be finite numbers")
        return {token: min(100.0, max(-100.0, float(bias))) for token, bias in value.items()}

    @field_validator("min_tokens")
    @classmethod
    def _min_within_max(cls, value: int, info: ValidationInfo) -> int:
        # max_tokens is declared first, so it is validated (and present) by now.
        max_tokens = info.data.get("max_tokens")
        if max_tokens is not None and value > max_tokens:
            raise ValueError(f"min_tokens ({value}) is over max_tokens ({max_tokens})")
        return value

    def sampling(self) -> dict[str, Any]:
        sampling = self.model_dump(mode="json", include=set(SamplingFields.model_fields))
        if self.structured_outputs is not None:
            sampling["structured_outputs"] = self.structured_outputs.stored()
        return sampling


def _small_json(value: dict[str, Any]) -> dict[str, Any]:
    size = len(orjson.dumps(value))
    limit = serving_settings().max_metadata_bytes
    if size > limit:
        raise ValueError(f"is {size} bytes as JSON, over {limit}")
    return value


Metadata = Annotated[
    dict[str, str | int | float | bool | None],
    Field(max_length=64, description="Free-form values kept with the job"),
    AfterValidator(_small_json),
]


TokenIds = Annotated[
    list[Annotated[StrictInt, Field(ge=0, le=2**31 - 1)]],
    Field(min_length=1),
    # A token is at least a character: the prompt limit bounds a prompt of ids too.
    no_longer_than("max_prompt_chars", "tokens"),
]


class JobInput(ToolFields):
    """What the model reads: a plain prompt, chat turns, or a prompt already as token ids
    (vLLM's server takes those on /v1/completions); exactly one of them."""

    model_config = ConfigDict(extra="forbid")

    prompt: NonEmptyText | None = None
    messages: Annotated[list[Message], no_longer_than("max_messages", "messages")] | None = Field(
        None, min_length=1
    )
    prompt_token_ids: TokenIds | None = Field(
        None, description="The prompt as the model's token ids, handed to the engine as they are"
    )

    @model_validator(mode="after")
    def _one_input(self) -> Self:
        given = [self.prompt, self.messages, self.prompt_token_ids]
        if sum(value is not None for value in given) != 1:
            raise ValueError("give exactly one of 'prompt', 'messages' or 'prompt_token_ids'")
        if self.messages is not None:
            total = sum(message.size for message in self.messages)
            if total > (limit := serving_settings().max_prompt_chars):
                raise ValueError(f"messages hold {total} characters, over {limit}")
        elif self.tools:
            raise ValueError("tools: only a chat job (messages) can offer tools")
        return self

    def messages_json(self) -> list[dict[str, Any]] | None:
        if self.messages is None:
            return None
        return [m.model_dump(mode="json", exclude_none=True) for m in self.messages]

    def tools_json(self) -> dict[str, Any] | None:
        use = self.tool_use()
        return None if use is None else use.stored()


class JobSpec(SamplingFields, JobInput):
    """What the model reads and how it samples: what a job request and a batch line share."""

    @model_validator(mode="after")
    def _tool_constraint(self) -> Self:
        if (constraint := self.tool_constraint()) is not None:
            if self.structured_outputs is not None:
                raise ValueError(
                    "tool_choice: a named or required tool choice constrains the output "
                    "itself, so it cannot be combined with structured_outputs or response_format"
                )
            self.structured_outputs = StructuredOutputs.model_validate({"json": constraint})
        return self


# The longest deadline taken: thirty days, beyond any queue timeout.
MAX_DEADLINE_S = 30 * 86_400


class JobCreate(JobSpec):
    priority: int = Field(5, ge=0, le=9, description="0 runs first, 9 last")
    timeout_s: Annotated[int, at_most("max_job_timeout_s")] | None = Field(
        None, ge=1, description="Longest run; default the maximum"
    )
    queue_timeout_s: Annotated[int, at_most("queue_timeout_s")] | None = Field(
        None,
        ge=1,
        description="Longest wait in the queue before the job expires; default the maximum",
    )
    deadline_s: float | None = Field(
        None,
        gt=0,
        le=MAX_DEADLINE_S,
        description="Seconds from now by which it must be done (or the Cancel-After header): "
        "refused with 429 where the queue's estimate says it cannot be; still queued then, it "
        "expires; still running, it is cancelled with its text so far",
    )
    webhook: JobWebhook | None = Field(
        None, description="Where the job's end is announced, signed (docs/api.md, *Webhooks*)"
    )
    on_infeasible: Literal["reject", "accept"] = Field(
        "reject",
        description="Where the estimate misses the deadline: refuse (429), or queue it with a "
        "warning",
    )

    # A JSON body's numbers and flags are taken as sent: "1" or true for max_tokens would
    # otherwise run as 1. (Batch files, whose CSV cells are text, are read elsewhere.)
    @field_validator(
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "repetition_penalty",
        "min_p",
        "min_tokens",
        "priority",
        "timeout_s",
        "queue_timeout_s",
        "deadline_s",
        mode="before",
    )
    @classmethod
    def _a_number(cls, value: Any) -> Any:
        if isinstance(value, str | bool):
            raise ValueError(f"must be a number, not {type(value).__name__} {value!r}")
        return value

    @field_validator(
        "ignore_eos", "skip_special_tokens", "include_stop_str_in_output", mode="before"
    )
    @classmethod
    def _a_flag(cls, value: Any) -> Any:
        if not isinstance(value, bool):
            raise ValueError(f"must be true or false, not {value!r}")
        return value


class Usage(BaseModel):
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None


class JobLinks(BaseModel):
    self: str
    stream: str
    cancel: str


class JobSummary(BaseModel):
    """A job as the end of its stream reports it (the `done` event): every field a client
    sees but its input and its text, which the stream already carried."""

    id: uuid.UUID
    status: JobStatus
    priority: int
    timeout_s: int
    expires_at: datetime | None
    deadline_at: datetime | None = Field(None, description="When it must be done by, if asked")
    cancel_requested_at: datetime | None
    model: str | None
    attempt: int
    finish_reason: str | None
    error: str | None
    usage: Usage
    created_at: datetime
    started_at: datetime | None
    first_token_at: datetime | None
    finished_at: datetime | None
    batch_id: uuid.UUID | None = Field(None, description="The batch this job came from")
    custom_id: str | None = None
    metadata: dict[str, Any] | None = None
    links: JobLinks


class Candidate(BaseModel):
    token: str
    logprob: float


class TokenLogprob(Candidate):
    offset: int = Field(description="Where the token's text begins in the job's text")
    top_logprobs: list[Candidate] = Field(
        description="The engine's candidates at this position, the sampled token first"
    )


class JobPublic(JobSummary):
    prompt: str | None
    messages: list[Message] | None
    prompt_token_ids: list[int] | None = None
    params: dict[str, Any]
    text: str | None = Field(description="The final text, or the text so far while running")
    logprobs: list[TokenLogprob] | None = Field(
        None, description="Each output token's log probability, where `logprobs` was asked for"
    )
    tools: list[dict[str, Any]] | None = Field(None, description="The functions it offered")
    tool_choice: str | dict[str, Any] | None = Field(None, description="How they could be used")
    tool_calls: list[dict[str, Any]] | None = Field(
        None, description="The calls read in its text once it ended (OpenAI's shape)"
    )
    queue: QueueWait | None = Field(None, description="While queued: its place and estimates")
    webhook: dict[str, Any] | None = Field(None, description="Where its end is announced")
    warning: str | None = Field(
        None, description="At submit: why it may miss its deadline (on_infeasible: accept)"
    )


class JobsPublic(BaseModel):
    data: list[JobPublic]
    count: int

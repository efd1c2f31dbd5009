from vllm.sampling_params import RequestOutputKind

from api.batches.schemas import BatchOptions
from api.jobs.schemas import SamplingFields
from vqueue.contract.sampling import SAMPLING_KEYS
from worker.sampling import to_sampling_params


def test_stored_parameters_reach_the_engine() -> None:
    params = to_sampling_params(
        {
            "max_tokens": 12,
            "temperature": 0.5,
            "top_p": 0.9,
            "top_k": 40,
            "stop": ["\n\n"],
            "seed": 7,
            "ignore_eos": True,
            "presence_penalty": 0.5,
            "frequency_penalty": -0.25,
        }
    )
    assert (params.max_tokens, params.temperature, params.top_p, params.top_k) == (12, 0.5, 0.9, 40)
    assert params.stop == ["\n\n"]
    assert params.seed == 7
    assert params.ignore_eos is True
    assert (params.presence_penalty, params.frequency_penalty) == (0.5, -0.25)
    assert params.output_kind == RequestOutputKind.DELTA
    # Each job's own: the engine takes it without a deep copy on its loop.
    assert params.skip_clone is True
    assert params.clone() is not params


def test_unset_parameters_keep_the_engine_defaults() -> None:
    params = to_sampling_params({"max_tokens": 5, "top_k": None, "seed": None, "extra": 1})
    assert params.max_tokens == 5
    assert params.seed is None
    assert params.top_k in (0, -1)


def test_nul_characters_become_replacement_characters() -> None:
    from worker.generation import storable

    assert storable("a\x00b") == "a\ufffdb"
    assert len(storable("\x00\x00")) == 2  # offsets are unchanged
    assert storable("plain") == "plain"


def test_every_field_a_job_stores_reaches_the_engine_under_its_own_name() -> None:
    # What the API validates and stores is what the worker hands on: no field dropped.
    assert set(SamplingFields.model_fields) == set(SAMPLING_KEYS)
    # A batch takes a default for each of them (query parameters of POST /batches).
    assert set(SamplingFields.model_fields) <= set(BatchOptions.model_fields)
    stored = SamplingFields(
        max_tokens=8,
        min_tokens=2,
        min_p=0.1,
        repetition_penalty=1.2,
        stop_token_ids=[5],
        skip_special_tokens=False,
        include_stop_str_in_output=True,
    ).sampling()
    params = to_sampling_params(stored)
    assert (params.min_tokens, params.min_p, params.repetition_penalty) == (2, 0.1, 1.2)
    assert params.stop_token_ids == [5]
    assert (params.skip_special_tokens, params.include_stop_str_in_output) == (False, True)

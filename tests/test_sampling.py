from vllm.sampling_params import RequestOutputKind

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
    from worker.runner import storable

    assert storable("a\x00b") == "a\ufffdb"
    assert len(storable("\x00\x00")) == 2  # offsets are unchanged
    assert storable("plain") == "plain"

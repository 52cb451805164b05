"""SamplingParams validation and Sequence bookkeeping."""

from __future__ import annotations

import pytest

from cocina.engine.sequence import FinishReason, SamplingParams, Sequence, SequenceStatus


def test_sampling_params_defaults_validate() -> None:
    params = SamplingParams()
    params.validate()
    assert (params.max_tokens, params.temperature, params.top_k, params.logprobs) == (16, 1.0, 0, None)


def test_stop_lists_become_tuples_and_stay_hashable() -> None:
    params = SamplingParams(stop=["\n", "END"], stop_token_ids=[3, 4])  # type: ignore[arg-type]
    assert params.stop == ("\n", "END")
    assert params.stop_token_ids == (3, 4)
    hash(params)
    assert SamplingParams(stop="x").stop == ("x",)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_tokens", 0),
        ("temperature", -0.1),
        ("temperature", float("nan")),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("top_k", -1),
        ("min_p", 1.1),
        ("repetition_penalty", 0.0),
        ("presence_penalty", 2.5),
        ("frequency_penalty", -3.0),
        ("seed", -1),
        ("stop", ("",)),
        ("stop_token_ids", (-1,)),
        ("ignore_eos", 1),
        ("logprobs", 21),
        ("min_tokens", -1),
        ("min_tokens", 17),  # more than max_tokens=16
    ],
)
def test_validate_names_the_field(field: str, value: object) -> None:
    params = SamplingParams(**{field: value})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=field):
        params.validate()


def test_sequence_state() -> None:
    seq = Sequence([5, 6, 7], SamplingParams(max_tokens=4), request_id="req-1")
    assert seq.request_id == "req-1"
    assert seq.status is SequenceStatus.WAITING
    assert (seq.num_tokens, seq.num_prompt_tokens, seq.num_output_tokens) == (3, 3, 0)
    assert seq.num_computed_tokens == 0 and seq.num_cached_tokens == 0
    assert seq.block_table == [] and seq.finish_reason is None and not seq.is_finished
    seq.append_token(9)
    assert seq.output_token_ids == [9]
    assert seq.prompt_token_ids == [5, 6, 7]
    assert seq.last_token_id == 9
    assert seq.num_uncomputed_tokens == 4


def test_sequence_ids_are_unique_and_default_request_id() -> None:
    a, b = Sequence([1]), Sequence([1])
    assert a.seq_id != b.seq_id
    assert a.request_id == str(a.seq_id)
    assert a != b  # compared by identity


def test_sequence_rejects_empty_prompt_and_bad_params() -> None:
    with pytest.raises(ValueError, match="token_ids"):
        Sequence([])
    with pytest.raises(ValueError, match="token_ids"):
        Sequence([1, -2])
    with pytest.raises(ValueError, match="temperature"):
        Sequence([1], SamplingParams(temperature=-1.0))


def test_from_prompt_copies_the_tokens() -> None:
    prompt = (1, 2, 3)
    seq = Sequence.from_prompt(prompt, request_id="r")
    seq.append_token(4)
    assert prompt == (1, 2, 3)
    assert seq.params == SamplingParams()


def test_finish_reason_values() -> None:
    assert [str(r) for r in FinishReason] == ["stop", "length", "abort", "error"]
    assert FinishReason("length") is FinishReason.LENGTH

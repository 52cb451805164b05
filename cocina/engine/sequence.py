"""A request's token state as the scheduler and block manager see it (no torch).

``Sequence.token_ids`` holds the prompt followed by the generated tokens. ``num_computed_tokens`` counts the
leading tokens whose keys/values are in the KV cache (prefix-cache hits included); the next model step
computes ``token_ids[num_computed_tokens : num_computed_tokens + n]``. A sequence is a *decode* when exactly
one token is left to compute, and a *prefill* (possibly chunked) when more are.
"""

from __future__ import annotations

import enum
import itertools
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["FinishReason", "SamplingParams", "Sequence", "SequenceStatus"]


@dataclass(frozen=True)
class SamplingParams:
    """How to pick the next tokens of one request. Call :meth:`validate` before using untrusted values.

    ``top_k=0`` and ``min_p=0.0`` switch those filters off; ``temperature=0.0`` is greedy decoding.
    ``stop`` and ``stop_token_ids`` accept any iterable and are stored as tuples (the object stays hashable).
    """

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    logprobs: int | None = None
    min_tokens: int = 0

    def __post_init__(self) -> None:
        # A caller passing stop=["\n"] (JSON gives lists) should not end up with an unhashable params object.
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        else:
            object.__setattr__(self, "stop", tuple(self.stop))
        object.__setattr__(self, "stop_token_ids", tuple(self.stop_token_ids))

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field that is out of bounds."""
        _check_int(self.max_tokens, "max_tokens", lo=1)
        _check_float(self.temperature, "temperature", lo=0.0)
        _check_float(self.top_p, "top_p", lo=0.0, lo_open=True, hi=1.0)
        _check_int(self.top_k, "top_k", lo=0)
        _check_float(self.min_p, "min_p", lo=0.0, hi=1.0)
        _check_float(self.repetition_penalty, "repetition_penalty", lo=0.0, lo_open=True)
        _check_float(self.presence_penalty, "presence_penalty", lo=-2.0, hi=2.0)
        _check_float(self.frequency_penalty, "frequency_penalty", lo=-2.0, hi=2.0)
        if self.seed is not None:
            _check_int(self.seed, "seed", lo=0, hi=2**64 - 1)
        for s in self.stop:
            if not isinstance(s, str) or not s:
                raise ValueError(f"stop must contain non-empty strings, got {s!r}")
        for t in self.stop_token_ids:
            _check_int(t, "stop_token_ids", lo=0)
        if not isinstance(self.ignore_eos, bool):
            raise ValueError(f"ignore_eos must be a bool, got {self.ignore_eos!r}")
        if self.logprobs is not None:
            _check_int(self.logprobs, "logprobs", lo=0, hi=20)
        _check_int(self.min_tokens, "min_tokens", lo=0)
        if self.min_tokens > self.max_tokens:
            raise ValueError(f"min_tokens must be <= max_tokens ({self.max_tokens}), got {self.min_tokens}")


def _check_int(value: object, name: str, *, lo: int, hi: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise ValueError(f"{name} must be <= {hi}, got {value}")


def _check_float(
    value: object, name: str, *, lo: float, lo_open: bool = False, hi: float | None = None
) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < lo or (lo_open and value == lo):
        raise ValueError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {value}")
    if hi is not None and value > hi:
        raise ValueError(f"{name} must be <= {hi}, got {value}")


class SequenceStatus(enum.Enum):
    """Where a sequence is in its lifecycle. Preempted sequences go back to WAITING."""

    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


class FinishReason(enum.StrEnum):
    """Why a sequence finished; the values are what the APIs report (OpenAI's ``finish_reason``)."""

    STOP = "stop"  # EOS, a stop token id or a stop string
    LENGTH = "length"  # max_tokens, max_model_len or the KV cache's capacity
    ABORT = "abort"  # cancelled by the client
    ERROR = "error"  # the engine failed


_seq_ids = itertools.count()


@dataclass(eq=False)
class Sequence:
    """One request's tokens and bookkeeping. Compared by identity; ``seq_id`` is unique per process.

    Construct as ``Sequence(prompt_token_ids, params, request_id="...")``; ``request_id`` defaults to the
    ``seq_id`` as a string and ``arrival_time`` to ``time.monotonic()``. ``params`` is validated here.
    """

    token_ids: list[int]
    params: SamplingParams = field(default_factory=SamplingParams)
    request_id: str = ""
    arrival_time: float = field(default_factory=time.monotonic)
    seq_id: int = field(default_factory=lambda: next(_seq_ids))
    num_prompt_tokens: int = field(init=False)
    num_computed_tokens: int = field(init=False, default=0)
    num_cached_tokens: int = field(init=False, default=0)  # prompt tokens served by the prefix cache
    num_preemptions: int = field(init=False, default=0)
    block_table: list[int] = field(init=False, default_factory=list)
    status: SequenceStatus = field(init=False, default=SequenceStatus.WAITING)
    finish_reason: FinishReason | None = field(init=False, default=None)
    first_token_time: float | None = field(init=False, default=None)  # set by the engine
    # Chained content hashes of the sequence's full blocks, in order; owned by the block manager. Kept on
    # the sequence because tokens only ever get appended, so a hash stays valid across preemptions.
    block_hashes: list[bytes] = field(init=False, default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.token_ids = list(self.token_ids)
        if not self.token_ids:
            raise ValueError("token_ids must contain at least one prompt token")
        for t in self.token_ids:
            _check_int(t, "token_ids", lo=0)
        self.params.validate()
        self.num_prompt_tokens = len(self.token_ids)
        if not self.request_id:
            self.request_id = str(self.seq_id)

    @classmethod
    def from_prompt(
        cls, prompt_token_ids: Iterable[int], params: SamplingParams | None = None, request_id: str = ""
    ) -> Sequence:
        """Build a sequence from prompt token ids (a convenience for callers holding any iterable)."""
        return cls(list(prompt_token_ids), params or SamplingParams(), request_id)

    @property
    def num_tokens(self) -> int:
        """Prompt plus generated tokens."""
        return len(self.token_ids)

    @property
    def num_output_tokens(self) -> int:
        """Generated tokens so far."""
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def prompt_token_ids(self) -> list[int]:
        """The prompt (a copy)."""
        return self.token_ids[: self.num_prompt_tokens]

    @property
    def output_token_ids(self) -> list[int]:
        """The generated tokens (a copy)."""
        return self.token_ids[self.num_prompt_tokens :]

    @property
    def last_token_id(self) -> int:
        """The newest token: the input of the next decode step."""
        return self.token_ids[-1]

    @property
    def num_uncomputed_tokens(self) -> int:
        """Tokens whose KV is not yet in the cache; 1 for a decode, more for a (chunked) prefill."""
        return len(self.token_ids) - self.num_computed_tokens

    @property
    def is_finished(self) -> bool:
        """True once the sequence is FINISHED (any reason)."""
        return self.status is SequenceStatus.FINISHED

    def append_token(self, token_id: int) -> None:
        """Append one sampled token."""
        self.token_ids.append(token_id)

"""Scheduler: budgets, chunked prefill, preemption, FIFO, bounded queue, finishing, and a state machine.

No torch and no model: a "step" samples fake tokens for the sequences that need one.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from cocina.engine.block_manager import BlockManager
from cocina.engine.config import EngineConfig
from cocina.engine.errors import EngineError, EngineOverloaded
from cocina.engine.scheduler import ScheduledSeq, Scheduler, SchedulerOutput
from cocina.engine.sequence import FinishReason, SamplingParams, Sequence, SequenceStatus

EOS = 0
TokenFn = Callable[[Sequence], int]


def make_scheduler(
    num_blocks: int = 64, block_size: int = 4, *, prefill_first: bool = False, **config: object
) -> Scheduler:
    cfg = EngineConfig(block_size=block_size, **config)  # type: ignore[arg-type]
    return Scheduler(cfg, BlockManager(num_blocks, block_size, cfg.enable_prefix_caching), prefill_first=prefill_first)


def output_token(seq: Sequence) -> int:
    """A deterministic fake sample: distinct per sequence and position, never EOS."""
    return 1000 + 100 * (seq.seq_id % 50) + seq.num_output_tokens


def step(
    sched: Scheduler, token: TokenFn = output_token, eos: frozenset[int] = frozenset()
) -> SchedulerOutput:
    out = sched.schedule()
    sampled = {s.seq.seq_id: token(s.seq) for s in out.scheduled if s.needs_sample}
    sched.postprocess(out, sampled, eos)
    return out


def new_seq(n: int, max_tokens: int = 4, rid: str = "", first: int = 1, **params: object) -> Sequence:
    return Sequence(list(range(first, first + n)), SamplingParams(max_tokens=max_tokens, **params), rid)  # type: ignore[arg-type]


def run_to_completion(sched: Scheduler, max_steps: int = 10_000) -> list[SchedulerOutput]:
    outs = []
    while sched.has_unfinished():
        outs.append(step(sched))
        assert len(outs) < max_steps, "scheduler made no progress"
    return outs


# -- budgets and chunked prefill -----------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    prompt_lens=st.lists(st.integers(1, 40), min_size=1, max_size=12),
    max_tokens=st.integers(1, 12),
    max_num_seqs=st.integers(1, 6),
    max_num_batched_tokens=st.integers(1, 24),
    num_blocks=st.integers(14, 40),
    prefix_caching=st.booleans(),
    prefill_first=st.booleans(),
)
def test_budgets_are_respected_and_everything_finishes(
    prompt_lens: list[int],
    max_tokens: int,
    max_num_seqs: int,
    max_num_batched_tokens: int,
    num_blocks: int,
    prefix_caching: bool,
    prefill_first: bool,
) -> None:
    sched = make_scheduler(
        num_blocks,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        enable_prefix_caching=prefix_caching,
        prefill_first=prefill_first,
    )
    seqs = [new_seq(n, max_tokens) for n in prompt_lens]  # shared starts: prefix hits happen
    for seq in seqs:
        sched.add(seq)
    for _ in range(10_000):
        if not sched.has_unfinished():
            break
        # A decode is a sequence that was already running with one token to compute. A preempted sequence
        # re-admitted this step may also have one token left (the prefix cache gave back the rest): that is a
        # prefill chunk of one token, placed with the chunks (the runner handles a lone token there).
        decoding = {
            s.seq_id for s in seqs if s.status is SequenceStatus.RUNNING and s.num_uncomputed_tokens == 1
        }
        out = sched.schedule()
        assert out.num_batched_tokens == sum(s.num_new_tokens for s in out.scheduled)
        assert out.num_batched_tokens <= max_num_batched_tokens
        assert len(out.scheduled) <= max_num_seqs
        assert len({s.seq.seq_id for s in out.scheduled}) == len(out.scheduled)
        assert all(s.num_new_tokens >= 1 for s in out.scheduled)
        is_decode = [s.seq.seq_id in decoding for s in out.scheduled]
        is_prefill = [s.num_new_tokens > 1 for s in out.scheduled]
        if any(is_decode) and any(is_prefill):
            last_decode = max(i for i, d in enumerate(is_decode) if d)
            assert last_decode < is_prefill.index(True), "decodes come first"
        sampled = {s.seq.seq_id: output_token(s.seq) for s in out.scheduled if s.needs_sample}
        sched.postprocess(out, sampled, frozenset())
        sched.block_manager.check_invariants()
    assert not sched.has_unfinished()
    for seq in seqs:
        assert seq.finish_reason is FinishReason.LENGTH
        assert seq.num_output_tokens == max_tokens
        assert seq.output_token_ids == [1000 + 100 * (seq.seq_id % 50) + i for i in range(max_tokens)]
    assert sched.block_manager.num_free_blocks == num_blocks


def test_long_prompt_is_chunked_and_decodes_get_a_token_every_step() -> None:
    sched = make_scheduler(num_blocks=64, max_num_batched_tokens=8)
    short = new_seq(3, max_tokens=50, rid="short")
    sched.add(short)
    step(sched)  # prefill of the short prompt; it now decodes
    long = new_seq(100, max_tokens=2, rid="long", first=500)
    sched.add(long)
    num_prefill_steps = 0
    while long.num_output_tokens == 0:
        before = short.num_output_tokens
        out = step(sched)
        assert out.scheduled[0].seq is short and out.scheduled[0].num_new_tokens == 1
        assert short.num_output_tokens == before + 1
        assert out.scheduled[1].seq is long and out.scheduled[1].num_new_tokens <= 7
        num_prefill_steps += 1
    assert num_prefill_steps == 15  # ceil(100 / 7): never one 100-token step stalling the decode


def test_prefill_first_runs_a_new_prompt_alone_then_the_decodes() -> None:
    sched = make_scheduler(prefill_first=True)
    running = [new_seq(3, max_tokens=50, rid=f"r{i}", first=10 * i + 1) for i in range(3)]
    for seq in running:
        sched.add(seq)
    step(sched)  # their prompts
    assert all(s.num_output_tokens == 1 for s in running)
    late = new_seq(5, max_tokens=5, rid="late", first=200)
    sched.add(late)
    out = step(sched)
    assert [s.seq for s in out.scheduled] == [late]  # its first token does not wait for the decodes
    assert late.num_output_tokens == 1
    out = step(sched)
    assert [s.seq for s in out.scheduled] == [*running, late]  # then everyone decodes
    # Without the option the same arrival shares a step with the decodes.
    mixed = make_scheduler()
    others = [new_seq(3, max_tokens=50, rid=f"m{i}", first=10 * i + 1) for i in range(3)]
    for seq in others:
        mixed.add(seq)
    step(mixed)
    mixed.add(new_seq(5, max_tokens=5, rid="late", first=200))
    assert len(step(mixed).scheduled) == 4


def test_prefill_first_never_starves_the_decodes() -> None:
    """A new prompt every step: the decodes still run at least every other step."""
    sched = make_scheduler(num_blocks=400, prefill_first=True, max_num_seqs=64)
    decoder = new_seq(3, max_tokens=30, rid="d")
    sched.add(decoder)
    step(sched)
    gaps, last = [], 0
    for i in range(1, 40):
        sched.add(new_seq(4, max_tokens=1, rid=f"n{i}", first=100 + 10 * i))
        before = decoder.num_output_tokens
        step(sched)
        if decoder.num_output_tokens > before:
            gaps.append(i - last)
            last = i
        if decoder.is_finished:
            break
    assert gaps and max(gaps) <= 2


def test_prefill_first_with_a_long_prompt_alternates_chunks_and_decodes() -> None:
    sched = make_scheduler(num_blocks=64, max_num_batched_tokens=8, prefill_first=True)
    short = new_seq(3, max_tokens=50, rid="short")
    sched.add(short)
    step(sched)
    long = new_seq(40, max_tokens=2, rid="long", first=500)
    sched.add(long)
    kinds = []
    while long.num_output_tokens == 0:
        out = step(sched)
        kinds.append("decode" if any(s.seq is short for s in out.scheduled) else "prompt")
    # Prompt-only steps never come two in a row while the short sequence decodes.
    assert "prompt prompt" not in " ".join(kinds)
    assert kinds[0] == "prompt"


def test_admitted_sequence_gets_a_partial_chunk_of_the_remaining_budget() -> None:
    sched = make_scheduler(max_num_batched_tokens=10)
    a, b = new_seq(6, rid="a"), new_seq(9, rid="b", first=100)
    sched.add(a)
    sched.add(b)
    out = sched.schedule()
    assert [(s.seq.request_id, s.num_new_tokens, s.needs_sample) for s in out.scheduled] == [
        ("a", 6, True),
        ("b", 4, False),
    ]
    assert out.num_batched_tokens == 10


def test_sequence_budget_limits_running() -> None:
    sched = make_scheduler(max_num_seqs=2)
    for i in range(4):
        sched.add(new_seq(2, rid=str(i), first=10 * i + 1))
    out = step(sched)
    assert [s.seq.request_id for s in out.scheduled] == ["0", "1"]
    assert (sched.num_running, sched.num_waiting) == (2, 2)


def test_needs_sample_is_fixed_when_scheduled() -> None:
    sched = make_scheduler()
    seq = new_seq(5)
    sched.add(seq)
    out = sched.schedule()
    assert out.scheduled[0].needs_sample
    sched.postprocess(out, {seq.seq_id: 7}, frozenset())
    assert out.scheduled[0].needs_sample
    assert ScheduledSeq(seq, 1).needs_sample


# -- preemption ----------------------------------------------------------------------------------------


def test_preempted_sequence_resumes_with_its_output_intact() -> None:
    # 6 blocks of 4 tokens; two sequences of 4 + 12 tokens need 8 blocks in all, so one must yield.
    sched = make_scheduler(num_blocks=6, enable_prefix_caching=False)
    old, new = new_seq(4, max_tokens=12, rid="old"), new_seq(4, max_tokens=12, rid="new", first=50)
    sched.add(old)
    sched.add(new)
    outputs_at_preemption: list[int] | None = None
    while sched.has_unfinished():
        out = step(sched)
        if out.preempted and outputs_at_preemption is None:
            assert out.preempted == [new]  # the newest goes
            assert new.status is SequenceStatus.WAITING and new.block_table == []
            assert new.num_computed_tokens == 0
            outputs_at_preemption = new.output_token_ids
            assert outputs_at_preemption
            # Nothing is admitted in a step that preempted; the old one keeps decoding.
            assert [s.seq for s in out.scheduled] == [old]
    assert outputs_at_preemption is not None
    assert sched.num_preemptions >= 1 and new.num_preemptions >= 1
    for seq in (old, new):
        assert seq.finish_reason is FinishReason.LENGTH
        assert seq.output_token_ids == [1000 + 100 * (seq.seq_id % 50) + i for i in range(12)]
    assert new.output_token_ids[: len(outputs_at_preemption)] == outputs_at_preemption
    assert sched.block_manager.num_free_blocks == 6


def test_preempted_sequence_recomputes_prompt_and_output_then_samples() -> None:
    sched = make_scheduler(num_blocks=3, enable_prefix_caching=False)
    a, b = new_seq(4, max_tokens=8, rid="a"), new_seq(3, max_tokens=8, rid="b", first=50)
    sched.add(a)
    sched.add(b)
    while not b.num_preemptions:
        step(sched)
    num_tokens = b.num_tokens
    assert num_tokens > b.num_prompt_tokens
    while b.status is SequenceStatus.WAITING:
        out = step(sched)
    entry = next(s for s in out.scheduled if s.seq is b)
    assert entry.num_new_tokens == num_tokens  # the whole prompt + output again, in one chunk
    assert entry.needs_sample


def test_preemption_victims_go_to_the_front_oldest_first() -> None:
    sched = make_scheduler(num_blocks=4, enable_prefix_caching=False, max_num_batched_tokens=64)
    seqs = [new_seq(4, max_tokens=20, rid=str(i), first=10 * i + 1) for i in range(4)]
    late = new_seq(1, rid="late", first=99)
    for seq in seqs:
        sched.add(seq)
    step(sched)  # all four prefilled: one block each, cache full
    sched.add(late)
    out = step(sched)  # each needs a second block: the newest are preempted
    assert out.preempted == [seqs[3], seqs[2]]
    assert list(sched._waiting) == [seqs[2], seqs[3], late]


def test_a_sequence_never_outgrows_the_cache() -> None:
    # One sequence alone fills the cache: it finishes with LENGTH instead of being preempted forever.
    sched = make_scheduler(num_blocks=2, block_size=4)
    seq = new_seq(3, max_tokens=100)
    sched.add(seq)
    run_to_completion(sched, max_steps=50)
    assert seq.finish_reason is FinishReason.LENGTH
    assert seq.num_tokens == 8
    assert sched.num_preemptions == 0


# -- admission -----------------------------------------------------------------------------------------


def test_fifo_no_overtaking() -> None:
    sched = make_scheduler(num_blocks=6, enable_prefix_caching=False)
    running = new_seq(8, max_tokens=8, rid="running")  # 2 blocks, grows to 4
    sched.add(running)
    step(sched)
    big = new_seq(16, rid="big", first=100)  # 4 blocks: does not fit next to "running"
    small = new_seq(2, rid="small", first=200)  # would fit
    sched.add(big)
    sched.add(small)
    while running.status is SequenceStatus.RUNNING:
        out = step(sched)
        assert {s.seq.request_id for s in out.scheduled} == {"running"}
        assert small.status is SequenceStatus.WAITING
    out = step(sched)
    assert [s.seq.request_id for s in out.scheduled] == ["big", "small"]


def test_bounded_waiting_queue_rejects_with_overloaded() -> None:
    sched = make_scheduler(max_waiting=2, max_num_seqs=1)
    sched.add(new_seq(2, rid="a"))
    sched.add(new_seq(2, rid="b"))
    with pytest.raises(EngineOverloaded, match=r"overloaded.*max_waiting=2"):
        sched.add(new_seq(2, rid="c"))
    assert sched.num_waiting == 2 and sched.get("c") is None
    step(sched)  # "a" is admitted, making room
    sched.add(new_seq(2, rid="c"))
    assert sched.num_waiting == 2


def test_add_rejects_sequences_that_can_never_run() -> None:
    sched = make_scheduler(num_blocks=4, block_size=4, max_model_len=10)
    with pytest.raises(ValueError, match="prompt too long: 10 tokens; at most 9"):
        sched.add(new_seq(10))
    small_cache = make_scheduler(num_blocks=2, block_size=4)  # capacity 8 tokens
    with pytest.raises(ValueError, match="prompt too long"):
        small_cache.add(new_seq(8))
    sched.add(new_seq(9, rid="x"))
    with pytest.raises(ValueError, match="already in use"):
        sched.add(new_seq(2, rid="x"))
    done = new_seq(2, rid="y")
    sched.add(done)
    sched.abort("y")
    with pytest.raises(ValueError, match="not new"):
        sched.add(done)


def test_block_size_must_match() -> None:
    with pytest.raises(ValueError, match="block_size"):
        Scheduler(EngineConfig(block_size=16), BlockManager(4, 8))


def test_prefix_hits_through_the_scheduler() -> None:
    sched = make_scheduler()
    first = new_seq(10, max_tokens=1, rid="first")
    sched.add(first)
    run_to_completion(sched)
    second = new_seq(10, max_tokens=1, rid="second")
    sched.add(second)
    out = sched.schedule()
    assert second.num_cached_tokens == 8
    assert out.scheduled[0].num_new_tokens == 2
    bm = sched.block_manager
    assert (bm.prefix_query_tokens, bm.prefix_hit_tokens) == (20, 8)


def test_decode_filled_blocks_are_shared() -> None:
    sched = make_scheduler()
    first = new_seq(3, max_tokens=6, rid="first")
    sched.add(first)
    run_to_completion(sched)
    # Prompt + generated tokens; the first two blocks (8 tokens) were computed and registered.
    again = Sequence([*first.token_ids[:8], 1], SamplingParams(max_tokens=1))
    sched.add(again)
    sched.schedule()
    assert again.num_cached_tokens == 8


# -- finishing -----------------------------------------------------------------------------------------


def run_one(params: dict[str, object], tokens: list[int], **config: object) -> Sequence:
    sched = make_scheduler(**config)  # type: ignore[arg-type]
    seq = new_seq(3, **params)  # type: ignore[arg-type]
    sched.add(seq)
    feed = iter(tokens)
    while sched.has_unfinished():
        step(sched, token=lambda _seq: next(feed), eos=frozenset({EOS}))
    assert sched.block_manager.num_free_blocks == sched.block_manager.num_blocks
    return seq


def test_finish_on_eos() -> None:
    seq = run_one({"max_tokens": 10}, [5, 6, EOS, 7])
    assert (seq.finish_reason, seq.output_token_ids) == (FinishReason.STOP, [5, 6, EOS])


def test_ignore_eos() -> None:
    seq = run_one({"max_tokens": 4, "ignore_eos": True}, [EOS] * 4)
    assert (seq.finish_reason, seq.num_output_tokens) == (FinishReason.LENGTH, 4)


def test_min_tokens_defers_eos_and_stop_token_ids() -> None:
    seq = run_one({"max_tokens": 10, "min_tokens": 3, "stop_token_ids": (9,)}, [EOS, 9, 5, 9])
    assert (seq.finish_reason, seq.output_token_ids) == (FinishReason.STOP, [EOS, 9, 5, 9])


def test_finish_on_stop_token_id() -> None:
    seq = run_one({"max_tokens": 10, "stop_token_ids": (42,)}, [5, 42])
    assert (seq.finish_reason, seq.output_token_ids) == (FinishReason.STOP, [5, 42])


def test_finish_on_max_tokens() -> None:
    seq = run_one({"max_tokens": 2}, [5, 6, 7])
    assert (seq.finish_reason, seq.output_token_ids) == (FinishReason.LENGTH, [5, 6])


def test_finish_on_max_model_len() -> None:
    seq = run_one({"max_tokens": 10}, [5, 6, 7, 8], max_model_len=5)
    assert (seq.finish_reason, seq.num_tokens) == (FinishReason.LENGTH, 5)


def test_postprocess_returns_sequences_that_got_a_token() -> None:
    sched = make_scheduler(max_num_batched_tokens=6)
    a, b = new_seq(2, max_tokens=1, rid="a"), new_seq(9, rid="b", first=50)
    sched.add(a)
    sched.add(b)
    out = sched.schedule()
    updated = sched.postprocess(out, {a.seq_id: 5}, frozenset())
    assert updated == [a] and a.is_finished and not b.is_finished  # b's chunk did not reach its end


def test_postprocess_requires_a_token_for_each_sampled_sequence() -> None:
    sched = make_scheduler()
    seq = new_seq(3)
    sched.add(seq)
    out = sched.schedule()
    with pytest.raises(EngineError, match="no sampled token"):
        sched.postprocess(out, {}, frozenset())
    assert seq.num_computed_tokens == 0  # nothing applied


def test_abort_waiting_and_running_frees_blocks() -> None:
    sched = make_scheduler(num_blocks=8, max_num_seqs=1)
    running, waiting = new_seq(9, rid="r"), new_seq(3, rid="w", first=50)
    sched.add(running)
    sched.add(waiting)
    step(sched)
    assert sched.block_manager.num_used_blocks == 3
    assert sched.abort("w") is waiting and waiting.finish_reason is FinishReason.ABORT
    assert sched.abort("r") is running and running.finish_reason is FinishReason.ABORT
    assert sched.block_manager.num_free_blocks == 8
    assert not sched.has_unfinished()
    assert sched.abort("r") is None and sched.abort("nope") is None


def test_abort_between_schedule_and_postprocess_is_skipped() -> None:
    sched = make_scheduler()
    seq = new_seq(3, rid="x")
    sched.add(seq)
    out = sched.schedule()
    sched.abort("x")
    assert sched.postprocess(out, {}, frozenset()) == []
    assert seq.num_output_tokens == 0


def test_finish_for_stop_strings_frees_blocks_and_is_idempotent() -> None:
    sched = make_scheduler()
    seq = new_seq(3, max_tokens=10)
    sched.add(seq)
    step(sched)
    sched.finish(seq, FinishReason.STOP)
    sched.finish(seq, FinishReason.ABORT)
    assert seq.finish_reason is FinishReason.STOP
    assert sched.num_running == 0 and sched.block_manager.num_used_blocks == 0


# -- state machine -------------------------------------------------------------------------------------


# A few common prefixes and a tiny vocabulary, so that prompts often share blocks.
PROMPTS = st.builds(
    lambda prefix, tail: [*prefix, *tail] or [1],
    st.sampled_from([(), (1,) * 8, (1, 2) * 4, (3, 1, 2, 3, 1)]),
    st.lists(st.integers(1, 3), max_size=8),
)


class SchedulerMachine(RuleBasedStateMachine):
    """Random add / step / abort / finish against a small cache; checks ownership and accounting."""

    def __init__(self) -> None:
        super().__init__()
        self.sched: Scheduler
        self.seqs: list[Sequence] = []
        self.expected_outputs: dict[int, list[int]] = {}
        self.kv: dict[tuple[int, int], int] = {}  # (block id, offset) -> key of the prefix whose KV it holds
        self.keys: dict[int, list[int]] = {}

    @initialize(
        block_size=st.sampled_from([1, 2, 4]),
        capacity=st.integers(20, 48),  # tokens; small enough that preemption is common
        max_num_seqs=st.integers(1, 5),
        max_num_batched_tokens=st.integers(1, 16),
        prefix_caching=st.booleans(),
        prefill_first=st.booleans(),
    )
    def setup(
        self,
        block_size: int,
        capacity: int,
        max_num_seqs: int,
        max_num_batched_tokens: int,
        prefix_caching: bool,
        prefill_first: bool,
    ) -> None:
        self.sched = make_scheduler(
            capacity // block_size,
            block_size,
            prefill_first=prefill_first,
            max_num_seqs=max_num_seqs,
            max_num_batched_tokens=max_num_batched_tokens,
            enable_prefix_caching=prefix_caching,
            max_waiting=6,
        )

    @rule(
        prompts=st.lists(PROMPTS, min_size=1, max_size=2),
        max_tokens=st.integers(1, 12),
        min_tokens=st.integers(0, 2),
    )
    def add(self, prompts: list[list[int]], max_tokens: int, min_tokens: int) -> None:
        for prompt in prompts:
            self._add(prompt, max_tokens, min(min_tokens, max_tokens))

    def _add(self, prompt: list[int], max_tokens: int, min_tokens: int) -> None:
        seq = Sequence(prompt, SamplingParams(max_tokens=max_tokens, min_tokens=min_tokens))
        if seq.num_tokens >= self.sched.max_seq_len:
            with pytest.raises(ValueError):
                self.sched.add(seq)
            return
        if self.sched.num_waiting >= 6:
            with pytest.raises(EngineOverloaded):
                self.sched.add(seq)
            return
        self.sched.add(seq)
        self.seqs.append(seq)
        self.expected_outputs[seq.seq_id] = []

    @rule(num_steps=st.integers(1, 6), tokens=st.lists(st.integers(0, 9), min_size=8, max_size=8))
    def step(self, num_steps: int, tokens: list[int]) -> None:
        for _ in range(num_steps):
            self._step(tokens)
            self.accounting()

    def _step(self, tokens: list[int]) -> None:
        hits_before = self.sched.block_manager.prefix_hit_tokens
        out = self.sched.schedule()
        if out.preempted:
            event("preempted")
        if self.sched.block_manager.prefix_hit_tokens > hits_before:
            event("prefix hit")
        if any(s.seq.num_preemptions and s.needs_sample for s in out.scheduled):
            event("resumed after preemption")
        cfg = self.sched.config
        assert out.num_batched_tokens <= cfg.max_num_batched_tokens
        assert len(out.scheduled) <= cfg.max_num_seqs
        self.run_fake_model(out)
        sampled = {s.seq.seq_id: tokens[i % 8] for i, s in enumerate(out.scheduled) if s.needs_sample}
        self.sched.postprocess(out, sampled, frozenset({EOS}))
        for s in out.scheduled:
            if s.seq.seq_id in sampled and s.seq.finish_reason is not FinishReason.ABORT:
                self.expected_outputs[s.seq.seq_id].append(sampled[s.seq.seq_id])

    def run_fake_model(self, out: SchedulerOutput) -> None:
        """Play the model runner against a fake KV cache whose slots hold "the KV of this prefix".

        The KV at position p depends on tokens 0..p, so a slot stores a key of that whole prefix. Every
        sequence must find its own prefix in all the slots it reads (no stale, foreign or not-yet-computed
        KV, including blocks shared by the prefix cache) and may only write into blocks nobody else holds.
        All reads happen before all writes: nobody may rely on KV computed in the same step.
        """
        bs = self.sched.config.block_size
        blocks = self.sched.block_manager.blocks
        for s in out.scheduled:
            seq, keys = s.seq, self.prefix_keys(s.seq)
            for pos in range(seq.num_computed_tokens):
                assert self.kv.get((seq.block_table[pos // bs], pos % bs)) == keys[pos], "wrong KV read"
        for s in out.scheduled:
            seq, keys = s.seq, self.prefix_keys(s.seq)
            start = seq.num_computed_tokens
            assert len(seq.block_table) * bs >= start + s.num_new_tokens, "no block to write into"
            for pos in range(start, start + s.num_new_tokens):
                block_id = seq.block_table[pos // bs]
                assert blocks[block_id].ref_count == 1, "write into a shared block"
                self.kv[(block_id, pos % bs)] = keys[pos]

    def prefix_keys(self, seq: Sequence) -> list[int]:
        keys = self.keys.setdefault(seq.seq_id, [])
        for token in seq.token_ids[len(keys) :]:
            keys.append(hash((keys[-1] if keys else None, token)))
        return keys

    @rule(data=st.data())
    def abort(self, data: st.DataObject) -> None:
        if not self.seqs:
            assert self.sched.abort("unknown") is None
            return
        seq = data.draw(st.sampled_from(self.seqs))
        was_finished = seq.is_finished
        result = self.sched.abort(seq.request_id)
        assert result is (None if was_finished else seq)
        assert seq.is_finished

    @rule(data=st.data())
    def finish_stop_string(self, data: st.DataObject) -> None:
        if not self.seqs:
            return
        seq = data.draw(st.sampled_from(self.seqs))
        was_finished = seq.is_finished
        self.sched.finish(seq, FinishReason.STOP)
        assert seq.is_finished and (was_finished or seq.finish_reason is FinishReason.STOP)

    @invariant()
    def accounting(self) -> None:
        if not hasattr(self, "sched"):
            return
        sched, bm = self.sched, self.sched.block_manager
        bm.check_invariants()
        assert bm.num_free_blocks + bm.num_used_blocks == bm.num_blocks
        assert sched.num_running <= sched.config.max_num_seqs
        holders: dict[int, list[tuple[Sequence, int]]] = {}
        for seq in self.seqs:
            assert seq.output_token_ids == self.expected_outputs[seq.seq_id], "outputs lost or changed"
            if seq.status is not SequenceStatus.RUNNING:
                assert seq.block_table == []
                continue
            assert len(seq.block_table) >= bm.num_blocks_for(seq.num_tokens - 1)
            for index, block_id in enumerate(seq.block_table):
                holders.setdefault(block_id, []).append((seq, index))
        for block_id, owners in holders.items():
            block = bm.blocks[block_id]
            assert block.ref_count == len(owners)
            if len(owners) > 1:
                # Shared only by equal content at the same position, and only once computed by everyone.
                assert block.block_hash is not None
                for seq, index in owners:
                    start = index * bm.block_size
                    assert tuple(seq.token_ids[start : start + bm.block_size]) == block.token_ids
                    assert seq.num_computed_tokens >= start + bm.block_size
        for block in bm.blocks:
            if block.block_id not in holders:
                assert block.ref_count == 0

    def teardown(self) -> None:
        if not hasattr(self, "sched"):
            return
        # Whatever is left must drain on its own (no livelock), then every block is free again.
        for _ in range(2000):
            if not self.sched.has_unfinished():
                break
            self._step([5] * 8)
        assert not self.sched.has_unfinished()
        bm = self.sched.block_manager
        assert bm.num_free_blocks == bm.num_blocks
        assert all(block.ref_count == 0 for block in bm.blocks)
        bm.check_invariants()


SchedulerMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestSchedulerMachine = SchedulerMachine.TestCase

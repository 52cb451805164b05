"""The step scheduler: which sequences run next and how many tokens each computes (no torch).

Every step gets a token budget (``max_num_batched_tokens``) and a sequence budget (``max_num_seqs``):

1. Running decodes first, oldest first, one token each, so generation never stalls behind a long prompt.
   A decode that needs a new KV block and finds none preempts the newest running sequence (by recompute:
   it loses its blocks and goes back to the front of the waiting queue) until it gets one; if it is itself
   the newest, it is the one preempted.
2. Running sequences in the middle of a chunked prefill continue with as many tokens as the budget leaves.
3. Waiting sequences are admitted in FIFO order while blocks, the sequence budget and the token budget
   allow; the last one admitted may get a partial chunk. A waiting sequence that does not fit blocks the
   ones behind it (no overtaking), and nothing is admitted in a step that preempted.

With ``prefill_first`` (the default on CPU), a step that would admit or continue a prompt runs only the
prompts (steps 2 and 3): the new request's first token then waits for its own prefill, not for a step
that also carries every running decode. The decodes run in the very next step, which may again carry
prompt chunks but is never skipped, so a stream of arrivals cannot starve them: a decode waits at most one
prompt-only step. On a CPU a step costs about the same per row either way, so throughput does not change;
on a GPU one mixed step is cheaper than two, and the engine leaves this off there.

A sequence never grows past ``max_seq_len`` (the smaller of ``max_model_len`` and the KV cache's capacity),
so one sequence alone always fits in the cache and preemption cannot livelock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from cocina.engine.block_manager import BlockManager
from cocina.engine.config import EngineConfig
from cocina.engine.errors import EngineError, EngineOverloaded
from cocina.engine.sequence import FinishReason, Sequence, SequenceStatus

__all__ = ["ScheduledSeq", "Scheduler", "SchedulerOutput"]


@dataclass(frozen=True)
class ScheduledSeq:
    """One sequence in a step: compute ``seq.token_ids[seq.num_computed_tokens : ... + num_new_tokens]``."""

    seq: Sequence
    num_new_tokens: int
    # Fixed at construction: postprocess advances seq.num_computed_tokens, after which recomputing the
    # answer from the sequence would be wrong.
    _needs_sample: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        end = self.seq.num_computed_tokens + self.num_new_tokens
        object.__setattr__(self, "_needs_sample", end == self.seq.num_tokens)

    @property
    def needs_sample(self) -> bool:
        """True when this chunk reaches the end of the sequence's tokens (the model's logits are sampled)."""
        return self._needs_sample


@dataclass
class SchedulerOutput:
    """What one step runs: ``scheduled`` (decodes first, then prefill chunks) and who was preempted."""

    scheduled: list[ScheduledSeq]
    preempted: list[Sequence]
    num_batched_tokens: int

    @property
    def is_empty(self) -> bool:
        """True when there is nothing to run this step."""
        return not self.scheduled


class Scheduler:
    """Owns the waiting queue and the running set; see the module docstring for the policy.

    The engine calls :meth:`add`, then per step :meth:`schedule`, runs the model, and :meth:`postprocess`;
    :meth:`abort` and :meth:`finish` are called between steps.
    """

    def __init__(self, config: EngineConfig, block_manager: BlockManager, *, prefill_first: bool = False) -> None:
        if block_manager.block_size != config.block_size:
            raise ValueError(
                f"block_size mismatch: config {config.block_size}, block manager {block_manager.block_size}"
            )
        self.config = config
        self.block_manager = block_manager
        self._waiting: deque[Sequence] = deque()
        self._running: list[Sequence] = []  # admission order: the newest is last (the preemption victim)
        self._by_request_id: dict[str, Sequence] = {}
        self.num_preemptions = 0
        self.prefill_first = prefill_first
        self._decodes_owed = False  # the last step ran prompts only while decodes were ready
        capacity = block_manager.num_blocks * block_manager.block_size
        max_model_len = config.max_model_len
        self.max_seq_len = capacity if max_model_len is None else min(capacity, max_model_len)
        """Prompt plus output never reaches beyond this many tokens (finish reason LENGTH)."""

    # -- queue -------------------------------------------------------------------------------------------

    @property
    def num_running(self) -> int:
        """Sequences holding KV blocks (decoding or mid-prefill)."""
        return len(self._running)

    @property
    def num_waiting(self) -> int:
        """Sequences waiting for admission (new or preempted)."""
        return len(self._waiting)

    def has_unfinished(self) -> bool:
        """True while any sequence is waiting or running."""
        return bool(self._waiting or self._running)

    def get(self, request_id: str) -> Sequence | None:
        """The unfinished sequence with this request id, if any."""
        return self._by_request_id.get(request_id)

    def add(self, seq: Sequence) -> None:
        """Queue a new sequence.

        Raises ``ValueError`` for a sequence that can never run (already used, duplicate request id, or a
        prompt of ``max_seq_len`` tokens or more: at least one token must fit after it) and
        ``EngineOverloaded`` when ``max_waiting`` sequences are already waiting.
        """
        if seq.status is not SequenceStatus.WAITING or seq.block_table or seq.num_computed_tokens:
            raise ValueError(f"sequence {seq.seq_id} is not new (status {seq.status.value})")
        if seq.request_id in self._by_request_id:
            raise ValueError(f"request id {seq.request_id!r} is already in use")
        if seq.num_tokens >= self.max_seq_len:
            raise ValueError(
                f"prompt too long: {seq.num_tokens} tokens; at most {self.max_seq_len - 1} fit "
                f"(max_model_len and KV cache capacity leave {self.max_seq_len} tokens for prompt + output)"
            )
        if len(self._waiting) >= self.config.max_waiting:
            raise EngineOverloaded(
                f"engine overloaded: {len(self._waiting)} requests are already waiting "
                f"(max_waiting={self.config.max_waiting}); retry later"
            )
        self._waiting.append(seq)
        self._by_request_id[seq.request_id] = seq

    # -- one step ----------------------------------------------------------------------------------------

    def schedule(self) -> SchedulerOutput:
        """Pick this step's work under the token and sequence budgets (may preempt; may return nothing)."""
        budget = self.config.max_num_batched_tokens
        decodes: list[ScheduledSeq] = []
        prefills: list[ScheduledSeq] = []
        preempted: list[Sequence] = []

        if self.prefill_first and not self._decodes_owed:
            # Which running sequences are decoding must be read before admission adds the new ones.
            decoding = any(s.num_uncomputed_tokens == 1 for s in self._running)
            prompts_only = self._schedule_prompts(budget, preempted=False)
            if prompts_only:
                self._decodes_owed = decoding
                used = sum(s.num_new_tokens for s in prompts_only)
                return SchedulerOutput(scheduled=prompts_only, preempted=[], num_batched_tokens=used)
        self._decodes_owed = False

        for seq in list(self._running):
            if budget == 0:
                break
            if seq.status is not SequenceStatus.RUNNING or seq.num_uncomputed_tokens != 1:
                continue  # preempted a moment ago, or a prefill (handled below)
            if not self._reserve_block(seq, preempted):
                break  # seq was the newest and got preempted itself: everything after it is gone too
            decodes.append(ScheduledSeq(seq, 1))
            budget -= 1

        prefills = self._schedule_prompts(budget, preempted=bool(preempted))
        budget -= sum(s.num_new_tokens for s in prefills)
        return SchedulerOutput(
            scheduled=decodes + prefills,
            preempted=preempted,
            num_batched_tokens=self.config.max_num_batched_tokens - budget,
        )

    def _schedule_prompts(self, budget: int, *, preempted: bool) -> list[ScheduledSeq]:
        """Steps 2 and 3 of the policy: continue chunked prompts, then admit waiting ones, within ``budget``."""
        prefills: list[ScheduledSeq] = []
        for seq in self._running:
            if budget == 0:
                break
            if seq.num_uncomputed_tokens > 1:
                # Blocks for the whole token list were allocated at admission; nothing to reserve.
                chunk = min(seq.num_uncomputed_tokens, budget)
                prefills.append(ScheduledSeq(seq, chunk))
                budget -= chunk

        # After a preemption the cache is tight: admitting now would only preempt again next step.
        while not preempted and self._waiting and budget and len(self._running) < self.config.max_num_seqs:
            seq = self._waiting[0]
            if not self.block_manager.can_allocate(seq):
                break  # FIFO: later requests do not overtake one that does not fit
            self._waiting.popleft()
            self.block_manager.allocate(seq)
            seq.status = SequenceStatus.RUNNING
            self._running.append(seq)
            chunk = min(seq.num_uncomputed_tokens, budget)
            prefills.append(ScheduledSeq(seq, chunk))
            budget -= chunk
        return prefills

    def _reserve_block(self, seq: Sequence, preempted: list[Sequence]) -> bool:
        """Make sure ``seq`` has a block for its next token, preempting the newest running sequences.

        Returns False when ``seq`` itself had to be preempted.
        """
        while not self.block_manager.can_append(seq):
            victim = self._running[-1]
            self._preempt(victim)
            preempted.append(victim)
            if victim is seq:
                return False
        self.block_manager.may_append(seq)
        return True

    def _preempt(self, seq: Sequence) -> None:
        self._running.remove(seq)
        self.block_manager.deallocate(seq)  # also resets num_computed_tokens: the KV is recomputed
        seq.status = SequenceStatus.WAITING
        seq.num_preemptions += 1
        self.num_preemptions += 1
        # Victims are taken newest first, so the oldest victim ends up at the very front.
        self._waiting.appendleft(seq)

    def postprocess(
        self, out: SchedulerOutput, sampled: dict[int, int], eos_token_ids: frozenset[int]
    ) -> list[Sequence]:
        """Apply a finished step: advance computed tokens, append sampled tokens, finish sequences.

        ``sampled`` maps ``seq_id`` to the token sampled for every scheduled entry with ``needs_sample``.
        A sequence finishes with STOP on an EOS token (unless ``ignore_eos``) or a ``stop_token_ids`` token
        once it has ``min_tokens`` outputs, and with LENGTH at ``max_tokens`` or ``max_seq_len``; finished
        sequences leave the running set and free their blocks.

        Returns the sequences that received a token this step, in scheduled order; finished ones among
        them have ``is_finished`` set. Sequences aborted since :meth:`schedule` are skipped.
        """
        missing = [
            s.seq.seq_id
            for s in out.scheduled
            if s.needs_sample and s.seq.status is SequenceStatus.RUNNING and s.seq.seq_id not in sampled
        ]
        if missing:
            raise EngineError(f"no sampled token for sequences {missing}")
        block_size = self.block_manager.block_size
        updated: list[Sequence] = []
        for s in out.scheduled:
            seq = s.seq
            if seq.status is not SequenceStatus.RUNNING:
                continue
            first_new_block = seq.num_computed_tokens // block_size
            seq.num_computed_tokens += s.num_new_tokens
            # Blocks this chunk filled are now computed and can be shared with later prompts.
            self.block_manager.register_computed_blocks(seq, first_new_block)
            if not s.needs_sample:
                continue
            token_id = sampled[seq.seq_id]
            seq.append_token(token_id)
            updated.append(seq)
            reason = self._finish_reason(seq, token_id, eos_token_ids)
            if reason is not None:
                self.finish(seq, reason)
        return updated

    def _finish_reason(
        self, seq: Sequence, token_id: int, eos_token_ids: frozenset[int]
    ) -> FinishReason | None:
        params = seq.params
        if seq.num_output_tokens >= params.min_tokens and (
            token_id in params.stop_token_ids or (not params.ignore_eos and token_id in eos_token_ids)
        ):
            return FinishReason.STOP
        if seq.num_output_tokens >= params.max_tokens or seq.num_tokens >= self.max_seq_len:
            return FinishReason.LENGTH
        return None

    # -- leaving -----------------------------------------------------------------------------------------

    def finish(self, seq: Sequence, reason: FinishReason) -> None:
        """Finish ``seq`` (waiting or running) now and free its blocks; a no-op if it already finished."""
        if seq.is_finished:
            return
        if seq.status is SequenceStatus.RUNNING:
            self._running.remove(seq)
        elif seq in self._waiting:
            self._waiting.remove(seq)
        if seq.block_table:
            self.block_manager.deallocate(seq)
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = reason
        if self._by_request_id.get(seq.request_id) is seq:
            del self._by_request_id[seq.request_id]

    def abort(self, request_id: str) -> Sequence | None:
        """Finish the request's sequence with ABORT and free its blocks; None if it is unknown or done."""
        seq = self._by_request_id.get(request_id)
        if seq is None:
            return None
        self.finish(seq, FinishReason.ABORT)
        return seq

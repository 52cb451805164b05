"""Turn one engine step's logits into next tokens: greedy, temperature, top-k/top-p/min-p, penalties, seeds.

The sampler runs every engine step on up to ``max_num_seqs`` rows of a ~50k vocabulary, on a CPU with two
cores, so every stage is a handful of vectorised passes over the ``[N, V]`` logits and nothing loops over
the vocabulary in Python:

1. **Fast path.** When every row is greedy with no penalties and no ``min_tokens`` constraint, the result is
   ``argmax`` of the logits (plus log-probabilities when asked for) and nothing else runs.
2. **Temperature.** The logits are converted to fp32 and multiplied by ``1 / temperature`` in one pass (1 for
   greedy rows). That pass also yields the sampler's private copy, so the caller's tensor is never written.
3. **Penalties** touch only the tokens a request has seen, with gather/scatter on small index tensors:
   repetition penalty (Hugging Face semantics, over prompt + output: positive logits are divided by the
   penalty and negative ones multiplied), then presence and frequency penalties (OpenAI semantics, over the
   output only: ``logit -= presence * (count > 0) + frequency * count``). Both commute with the temperature
   scaling (a positive factor), so they are applied after it with the additive penalties scaled by
   ``1 / temperature`` — identical in exact arithmetic to applying them to the raw logits first.
4. **Truncation** computes one logit threshold per row, the largest of: the k-th largest logit (top-k); the
   top-p cut-off, computed on the top-k-renormalised distribution as Hugging Face and vLLM do; and
   ``max + log(min_p)`` (min-p). One masked fill then removes everything below it. Top-p needs sorted
   values: on CPU ``numpy.sort`` (AVX-512 sorting network) is ~25x faster than ``torch.sort`` for 64 x 50k,
   and only the values are needed, not the permutation.
5. **Sampling** is inverse-CDF: ``exp(logit - max)``, a cumulative sum, one uniform number per row and a
   ``searchsorted``. Each seeded row draws its one number from its own ``torch.Generator``, so its result
   depends only on its own logits and its generator's state — not on which other requests share the batch
   or where the row sits. Unseeded rows share one draw from torch's global generator. Masked tokens have a
   zero-width CDF step and can never be chosen.

Log-probabilities (``SamplingParams.logprobs``) are the **raw model's**: ``log_softmax`` of the logits as the
model produced them, before penalties, temperature and truncation. That is vLLM's default
(``raw_logprobs``) and what OpenAI documents ("the log probability of this token"): a client can compare
them across requests with different sampling settings. The sampled token's own log-probability is always
returned, plus the ``logprobs`` most likely tokens (0 gives only the sampled token).
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass, field

import numpy as np
import torch

from cocina.engine.sequence import SamplingParams

__all__ = ["SampleResult", "Sampler", "TokenLogprobs"]


@dataclass(frozen=True)
class TokenLogprobs:
    """Log-probabilities for one sampled token (raw model distribution, see the module docstring).

    ``top`` lists ``(token_id, logprob)`` pairs, most likely first; it has ``SamplingParams.logprobs``
    entries and may or may not contain the sampled token.
    """

    token_id: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class SampleResult:
    """The next token of each row, in row order, and per-row log-probabilities (None where not asked)."""

    token_ids: list[int]
    logprobs: list[TokenLogprobs | None]


class Sampler:
    """Stateless next-token sampler; one instance can serve every step. See the module docstring."""

    def __call__(
        self,
        logits: torch.Tensor,
        rows: Seq[SamplingParams],
        histories: Seq[Seq[int]],
        prompt_lens: Seq[int],
        generators: Seq[torch.Generator | None],
        eos_token_ids: frozenset[int] | set[int] = frozenset(),
    ) -> SampleResult:
        """Sample one token per row of ``logits`` (``[N, V]``, any float dtype; computed in fp32).

        Args:
            logits: the model's next-token logits, one row per request; never modified.
            rows: each row's sampling parameters.
            histories: each row's prompt + output token ids so far (for penalties and ``min_tokens``).
            prompt_lens: the number of prompt tokens at the start of each history.
            generators: a per-request generator for seeded requests (advanced by one draw per sampled
                step), or None to use torch's global generator.
            eos_token_ids: tokens banned, together with ``stop_token_ids``, while a row has fewer than
                ``min_tokens`` output tokens. Optional: without it only ``stop_token_ids`` are banned.
        """
        n = logits.shape[0]
        if not (len(rows) == len(histories) == len(prompt_lens) == len(generators) == n):
            raise ValueError(
                f"sampler got {n} logit rows but {len(rows)} params, {len(histories)} histories, "
                f"{len(prompt_lens)} prompt lengths and {len(generators)} generators"
            )
        if logits.dim() != 2:
            raise ValueError(f"logits must be [N, V], got shape {tuple(logits.shape)}")
        if n == 0:
            return SampleResult([], [])

        greedy = [p.temperature == 0.0 for p in rows]
        rep_rows = [i for i, p in enumerate(rows) if p.repetition_penalty != 1.0]
        add_rows = [i for i, p in enumerate(rows) if p.presence_penalty != 0.0 or p.frequency_penalty != 0.0]
        ban_rows = [
            i
            for i, p in enumerate(rows)
            if p.min_tokens > 0 and len(histories[i]) - prompt_lens[i] < p.min_tokens
        ]

        if all(greedy) and not rep_rows and not add_rows and not ban_rows:
            # Fast path: the common greedy decode needs one pass over the logits. On CPU numpy's argmax (first
            # index of the maximum, as torch's) takes ~15 us for [1, 50k] where torch's reduction takes ~100:
            # at batch 1 that is a few percent of a token. Elsewhere max(dim).indices, ~3x argmax on [64, 50k].
            fast_ids: list[int] = (
                logits.numpy().argmax(axis=-1).tolist()
                if logits.device.type == "cpu" and logits.dtype == torch.float32
                else logits.max(dim=-1).indices.tolist()
            )
            return SampleResult(fast_ids, self._logprobs(logits, rows, fast_ids))

        # One pass: fp32, temperature-scaled, and our own copy to modify in place.
        inv_t = torch.tensor(
            [1.0 if g else 1.0 / p.temperature for g, p in zip(greedy, rows, strict=True)],
            dtype=torch.float32,
            device=logits.device,
        )
        x = logits.to(torch.float32) * inv_t.unsqueeze(1)
        vocab = x.shape[1]

        if rep_rows:
            _apply_repetition_penalty(x, rows, histories, rep_rows)
        if add_rows:
            _apply_additive_penalties(x, rows, histories, prompt_lens, add_rows, inv_t, vocab)
        if ban_rows:
            _ban_stop_tokens(x, rows, ban_rows, eos_token_ids, vocab)

        token_ids: list[int] = [0] * n
        greedy_idx = [i for i in range(n) if greedy[i]]
        sample_idx = [i for i in range(n) if not greedy[i]]
        if greedy_idx:
            if len(greedy_idx) == n:
                picked = x.max(dim=-1).indices.tolist()
            else:
                picked = x[_index(greedy_idx, x.device)].max(dim=-1).indices.tolist()
            for i, t in zip(greedy_idx, picked, strict=True):
                token_ids[i] = t
        if sample_idx:
            xs = x if len(sample_idx) == n else x[_index(sample_idx, x.device)]
            params = [rows[i] for i in sample_idx]
            gens = [generators[i] for i in sample_idx]
            picked = _sample(xs, params, gens)
            for i, t in zip(sample_idx, picked, strict=True):
                token_ids[i] = t
        return SampleResult(token_ids, self._logprobs(logits, rows, token_ids))

    @staticmethod
    def _logprobs(
        logits: torch.Tensor, rows: Seq[SamplingParams], token_ids: list[int]
    ) -> list[TokenLogprobs | None]:
        """Raw-model log-probabilities for the rows that asked for them (see the module docstring)."""
        out: list[TokenLogprobs | None] = [None] * len(rows)
        want = [i for i, p in enumerate(rows) if p.logprobs is not None]
        if not want:
            return out
        idx = _index(want, logits.device)
        lp = torch.log_softmax(logits[idx].to(torch.float32), dim=-1)
        chosen_ids = torch.tensor([token_ids[i] for i in want], device=logits.device).unsqueeze(1)
        chosen = lp.gather(1, chosen_ids).squeeze(1).tolist()
        k = max(int(rows[i].logprobs or 0) for i in want)
        top_vals: list[list[float]] = []
        top_ids: list[list[int]] = []
        if k > 0:
            vals, ids = lp.topk(min(k, lp.shape[1]), dim=-1)
            top_vals, top_ids = vals.tolist(), ids.tolist()
        for j, i in enumerate(want):
            ki = int(rows[i].logprobs or 0)
            top = list(zip(top_ids[j][:ki], top_vals[j][:ki], strict=True)) if ki else []
            out[i] = TokenLogprobs(token_id=token_ids[i], logprob=chosen[j], top=top)
        return out


def _index(idx: list[int], device: torch.device) -> torch.Tensor:
    return torch.tensor(idx, dtype=torch.long, device=device)


def _flat_tokens(seqs: list[Seq[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate token lists into (row_position, token) index tensors without a per-token Python loop."""
    lens = [len(s) for s in seqs]
    if sum(lens) == 0:
        empty = torch.empty(0, dtype=torch.long, device=device)
        return empty, empty
    # numpy converts each list in C; torch.tensor over one flattened Python list is ~10x slower.
    toks = np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs])
    pos = np.repeat(np.arange(len(seqs), dtype=np.int64), lens)
    return torch.from_numpy(pos).to(device), torch.from_numpy(toks).to(device)


def _apply_repetition_penalty(
    x: torch.Tensor, rows: Seq[SamplingParams], histories: Seq[Seq[int]], rep_rows: list[int]
) -> None:
    """HF repetition penalty over prompt + output tokens, in place, touching only the seen tokens.

    Duplicate (row, token) pairs all write the same value computed from the un-penalised logit, so a token
    is penalised once however often it occurred — as in Hugging Face's gather/scatter implementation.
    """
    pos, toks = _flat_tokens([histories[i] for i in rep_rows], x.device)
    if toks.numel() == 0:
        return
    row_ids = _index(rep_rows, x.device)[pos]
    penalty = torch.tensor([rows[i].repetition_penalty for i in rep_rows], device=x.device)[pos]
    vals = x[row_ids, toks]
    x[row_ids, toks] = torch.where(vals > 0, vals / penalty, vals * penalty)


def _apply_additive_penalties(
    x: torch.Tensor,
    rows: Seq[SamplingParams],
    histories: Seq[Seq[int]],
    prompt_lens: Seq[int],
    add_rows: list[int],
    inv_t: torch.Tensor,
    vocab: int,
) -> None:
    """OpenAI presence/frequency penalties over output tokens, in place, scaled by 1/temperature."""
    outputs = [histories[i][prompt_lens[i] :] for i in add_rows]
    pos, toks = _flat_tokens(outputs, x.device)
    if toks.numel() == 0:
        return
    # Count each (row, token) pair with one unique() over a combined key instead of a [N, V] count matrix.
    keys, counts = torch.unique(pos * vocab + toks, return_counts=True)
    kpos, ktok = keys // vocab, keys % vocab
    row_idx = _index(add_rows, x.device)
    presence = torch.tensor([rows[i].presence_penalty for i in add_rows], device=x.device)
    frequency = torch.tensor([rows[i].frequency_penalty for i in add_rows], device=x.device)
    rows_k = row_idx[kpos]
    delta = (presence[kpos] + frequency[kpos] * counts.to(torch.float32)) * inv_t[rows_k]
    x[rows_k, ktok] -= delta


def _ban_stop_tokens(
    x: torch.Tensor,
    rows: Seq[SamplingParams],
    ban_rows: list[int],
    eos_token_ids: frozenset[int] | set[int],
    vocab: int,
) -> None:
    """Forbid EOS and stop token ids for rows that have not produced ``min_tokens`` yet."""
    pairs = [
        (i, t) for i in ban_rows for t in (set(rows[i].stop_token_ids) | set(eos_token_ids)) if 0 <= t < vocab
    ]
    if pairs:
        r, t = zip(*pairs, strict=True)
        x[_index(list(r), x.device), _index(list(t), x.device)] = float("-inf")


def _sample(x: torch.Tensor, params: list[SamplingParams], gens: list[torch.Generator | None]) -> list[int]:
    """Truncate (top-k, top-p, min-p) and draw one token per row of the temperature-scaled logits ``x``.

    ``x`` is the sampler's private buffer and is overwritten.
    """
    n, vocab = x.shape
    row_max = x.amax(dim=-1)
    thr = torch.full((n,), float("-inf"), dtype=torch.float32, device=x.device)

    # min-p: p_i >= min_p * p_max  <=>  logit_i >= max + log(min_p); no softmax needed.
    min_p = torch.tensor([p.min_p for p in params], dtype=torch.float32, device=x.device)
    if bool((min_p > 0).any()):
        thr = torch.maximum(thr, torch.where(min_p > 0, row_max + torch.log(min_p), thr))

    ks = [p.top_k if 0 < p.top_k < vocab else 0 for p in params]
    topp_rows = [i for i, p in enumerate(params) if p.top_p < 1.0]
    topk_only = [i for i in range(n) if ks[i] and params[i].top_p >= 1.0]
    if topk_only:
        _topk_thresholds(x, topk_only, ks, thr)
    if topp_rows:
        _topp_thresholds(x, topp_rows, ks, [params[i].top_p for i in topp_rows], thr)

    if bool(torch.isfinite(thr).any()):
        x.masked_fill_(x < thr.unsqueeze(1), float("-inf"))

    # Inverse-CDF sampling: masked tokens have exp() == 0, a zero-width step that no draw can land on.
    x.sub_(row_max.unsqueeze(1)).exp_()
    cdf = torch.cumsum(x, dim=-1, out=x)
    total = cdf[:, -1]
    u = _uniforms(gens, x.device)
    # u < 1, but u * total can round up to total; keep the target strictly inside the last step.
    target = torch.minimum(u * total, torch.nextafter(total, torch.zeros_like(total)))
    picked = torch.searchsorted(cdf, target.unsqueeze(1), right=True).squeeze(1)
    return picked.clamp_(max=vocab - 1).tolist()


def _uniforms(gens: list[torch.Generator | None], device: torch.device) -> torch.Tensor:
    """One U[0, 1) draw per row: seeded rows from their own generator, the rest from the global one."""
    u = torch.empty(len(gens), dtype=torch.float32)
    unseeded = [i for i, g in enumerate(gens) if g is None]
    if unseeded:
        u[unseeded] = torch.rand(len(unseeded), dtype=torch.float32)
    for i, g in enumerate(gens):
        if g is not None:
            # Draw on the generator's own device so CPU generators work with logits anywhere.
            u[i] = torch.rand(1, generator=g, dtype=torch.float32, device=g.device).item()
    return u.to(device)


def _topk_thresholds(x: torch.Tensor, idx: list[int], ks: list[int], thr: torch.Tensor) -> None:
    """thr[i] = max(thr[i], k-th largest logit of row i) for rows using top-k without top-p."""
    by_k: dict[int, list[int]] = {}
    for i in idx:
        by_k.setdefault(ks[i], []).append(i)
    vocab = x.shape[1]
    for k, group in by_k.items():
        sub = x[_index(group, x.device)]
        if sub.device.type == "cpu":
            # np.partition is an O(V) selection (and AVX-512 accelerated); topk is several times slower.
            kth = torch.from_numpy(np.partition(sub.numpy(), vocab - k, axis=-1)[:, vocab - k].copy())
        else:
            kth = sub.topk(k, dim=-1).values[:, -1]
        g = _index(group, x.device)
        thr[g] = torch.maximum(thr[g], kth.to(thr.device))


def _topp_thresholds(
    x: torch.Tensor, idx: list[int], ks: list[int], top_ps: list[float], thr: torch.Tensor
) -> None:
    """thr[i] = max(thr[i], top-p cut-off logit) for rows using top-p (after their top-k, if any).

    Works on the ascending-sorted logits: the kept set is the smallest top set whose mass reaches top_p,
    i.e. position m onwards where m counts positions whose ascending cumulative mass is <= (1 - top_p).
    """
    g = _index(idx, x.device)
    sub = x[g]
    vocab = sub.shape[1]
    srt = torch.from_numpy(np.sort(sub.numpy(), axis=-1)) if sub.device.type == "cpu" else sub.sort(-1).values
    kk = torch.tensor([ks[i] for i in idx], dtype=torch.long, device=srt.device)
    has_k = kk > 0
    if bool(has_k.any()):
        # Restrict to the top-k first: positions below vocab - k leave the distribution.
        pos = torch.arange(vocab, device=srt.device).unsqueeze(0)
        srt.masked_fill_(has_k.unsqueeze(1) & (pos < (vocab - kk).unsqueeze(1)), float("-inf"))
    cut_vals = srt[:, -1:].clone()  # the top logit, always kept
    mass = torch.cumsum(srt.sub(cut_vals).exp_(), dim=-1)
    total = mass[:, -1:]
    p = torch.tensor(top_ps, dtype=torch.float32, device=srt.device).unsqueeze(1)
    m = torch.searchsorted(mass, (1.0 - p) * total, right=True).clamp_(max=vocab - 1)
    cutoff = srt.gather(1, m).squeeze(1)
    thr[g] = torch.maximum(thr[g], cutoff.to(thr.device))

"""The engine end to end on tiny random models (fp32): parity with ``model.generate``, stops, seeds, async."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from cocina.engine.config import EngineConfig
from cocina.engine.errors import EngineOverloaded
from cocina.engine.llm_engine import AsyncLLMEngine, ErrorEvent, FinishedEvent, LLMEngine, TokenEvent
from cocina.engine.sequence import FinishReason, SamplingParams
from cocina.models.tiny import Arch, make_tiny_model

ARCHS: list[Arch] = ["gpt2", "llama", "falcon", "qwen2", "mistral"]
PROMPTS = [
    "the quick brown fox",
    "a model that runs on the engine with many more words in its prompt than the others have",
    "hello",
    "continuous batching mixes prefill chunks and decodes in one step",
]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("engine-models")
    return {arch: make_tiny_model(root / arch, arch=arch) for arch in ARCHS}


def _engine(path: Path, **kw: object) -> LLMEngine:
    base: dict[str, object] = {
        "block_size": 4,
        "num_kv_blocks": 128,
        "dtype": "float32",
        "device": "cpu",
        "max_num_batched_tokens": 24,  # small: long prompts are prefilled in chunks next to decodes
    }
    base.update(kw)
    return LLMEngine.from_pretrained(path, EngineConfig(**base))  # type: ignore[arg-type]


def _reference(path: Path, prompts: list[str], max_new_tokens: int) -> list[list[int]]:
    """Greedy ``model.generate``, one request at a time, never stopping at EOS (the engine's ignore_eos)."""
    model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tok: Any = AutoTokenizer.from_pretrained(path)
    model.generation_config.eos_token_id = None
    out = []
    for p in prompts:
        ids = torch.tensor([tok.encode(p)])
        gen = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
        )
        out.append(gen[0, ids.shape[1] :].tolist())
    return out


GREEDY = SamplingParams(max_tokens=10, temperature=0.0, ignore_eos=True)


@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_single_requests_match_generate(arch: str, model_dirs: dict[str, Path]) -> None:
    engine = _engine(model_dirs[arch])
    want = _reference(model_dirs[arch], PROMPTS[:2], 10)
    for prompt, ref in zip(PROMPTS[:2], want, strict=True):
        (out,) = engine.generate([prompt], GREEDY)
        assert out.token_ids == ref
        assert out.finish_reason is FinishReason.LENGTH


# Falcon's other layer shapes (rotary, multi-query, parallel attention with one or two norms) and a Llama with
# full multi-head attention and biases: each takes code paths the five default models do not.
VARIANTS: dict[str, tuple[Arch, dict[str, Any]]] = {
    "falcon-7b": ("falcon", {"alibi": False, "multi_query": True, "parallel_attn": True, "bias": False}),
    "falcon-40b": (
        "falcon",
        {"alibi": False, "new_decoder_architecture": True, "num_kv_heads": 2, "parallel_attn": True, "bias": False},
    ),
    "llama-mha-bias": ("llama", {"num_kv_heads": 4, "attention_bias": True, "mlp_bias": True}),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_greedy_model_variants_match_generate(variant: str, tmp_path: Path) -> None:
    arch, overrides = VARIANTS[variant]
    path = make_tiny_model(tmp_path / variant, arch=arch, **overrides)
    engine = _engine(path)
    assert engine.runner.cocina is not None  # cocina's own model code, in fp32 on PyTorch ops
    want = _reference(path, PROMPTS[:2], 10)
    outs = engine.generate(PROMPTS[:2], GREEDY)
    assert [o.token_ids for o in outs] == want


@pytest.mark.parametrize("arch", ["llama", "falcon", "gpt2"])
def test_greedy_batch_with_staggered_arrivals_matches_generate(arch: str, model_dirs: dict[str, Path]) -> None:
    """Requests of different lengths arriving at different steps, prefix caching on: same tokens as alone."""
    engine = _engine(model_dirs[arch])
    want = _reference(model_dirs[arch], PROMPTS, 10)
    got: dict[str, list[int]] = {}
    pending = list(enumerate(PROMPTS))
    while pending or engine.has_unfinished():
        if pending:  # one new request every step while others decode
            i, p = pending.pop(0)
            engine.add_request(p, GREEDY, request_id=str(i))
        for o in engine.step():
            got.setdefault(o.request_id, []).extend(o.token_ids)
    assert [got[str(i)] for i in range(len(PROMPTS))] == want


def test_preemption_keeps_outputs_exact(model_dirs: dict[str, Path]) -> None:
    """A cache too small for all requests at once preempts (recompute) and still matches generate."""
    engine = _engine(model_dirs["llama"], num_kv_blocks=20, enable_prefix_caching=False)
    params = SamplingParams(max_tokens=14, temperature=0.0, ignore_eos=True)
    outs = engine.generate(PROMPTS, params)
    assert engine.stats().num_preemptions > 0
    assert [o.token_ids for o in outs] == _reference(model_dirs["llama"], PROMPTS, 14)


def test_text_is_the_decoded_tokens(model_dirs: dict[str, Path]) -> None:
    engine = _engine(model_dirs["mistral"])
    (out,) = engine.generate([PROMPTS[0]], SamplingParams(max_tokens=20, temperature=0.0, ignore_eos=True))
    tok: Any = engine.tokenizer
    assert out.text == tok.decode(out.token_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def test_stop_string_across_token_boundaries(model_dirs: dict[str, Path]) -> None:
    """A stop string made of the end of one token's text and the start of the next one's."""
    engine = _engine(model_dirs["mistral"])
    params = SamplingParams(max_tokens=20, temperature=0.0, ignore_eos=True)
    (free,) = engine.generate([PROMPTS[0]], params)
    tok: Any = engine.tokenizer
    pieces = [tok.decode([t]) for t in free.token_ids]
    # Find two consecutive non-empty pieces and take a stop string spanning their boundary.
    k = next(i for i in range(3, len(pieces) - 1) if pieces[i] and pieces[i + 1])
    before = "".join(pieces[:k])
    stop = pieces[k][-1] + pieces[k + 1][:1]
    assert stop in free.text
    expected = free.text[: free.text.index(stop)]
    (out,) = engine.generate([PROMPTS[0]], SamplingParams(**{**params.__dict__, "stop": (stop,)}))
    assert out.finish_reason is FinishReason.STOP
    assert out.text == expected
    assert out.text.startswith(before[: len(expected)])
    assert stop not in out.text


def test_eos_stops_unless_ignored(model_dirs: dict[str, Path]) -> None:
    engine = _engine(model_dirs["llama"])
    (free,) = engine.generate([PROMPTS[2]], SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True))
    eos = free.token_ids[2]  # pretend the third generated token is the end of sequence
    engine.eos_token_ids = frozenset({eos})
    (out,) = engine.generate([PROMPTS[2]], SamplingParams(max_tokens=8, temperature=0.0))
    assert out.finish_reason is FinishReason.STOP
    assert out.token_ids == free.token_ids[: free.token_ids.index(eos) + 1]
    assert out.usage is not None and out.usage.completion_tokens == len(out.token_ids)


def test_seeded_sampling_is_reproducible_in_any_batch(model_dirs: dict[str, Path]) -> None:
    engine = _engine(model_dirs["llama"])
    seeded = SamplingParams(max_tokens=12, temperature=1.0, top_p=0.9, seed=1234, ignore_eos=True)
    (alone,) = engine.generate([PROMPTS[0]], seeded)
    other = SamplingParams(max_tokens=12, temperature=1.0, ignore_eos=True)
    batch = engine.generate([PROMPTS[1], PROMPTS[0], PROMPTS[3]], [other, seeded, other])
    assert batch[1].token_ids == alone.token_ids
    (different,) = engine.generate([PROMPTS[0]], SamplingParams(**{**seeded.__dict__, "seed": 99}))
    assert different.token_ids != alone.token_ids


def test_full_queue_rejects(model_dirs: dict[str, Path]) -> None:
    engine = _engine(model_dirs["gpt2"], max_waiting=2)
    engine.add_request("a", GREEDY)
    engine.add_request("b", GREEDY)
    with pytest.raises(EngineOverloaded):
        engine.add_request("c", GREEDY)


def test_invalid_requests_are_rejected(model_dirs: dict[str, Path]) -> None:
    engine = _engine(model_dirs["gpt2"])
    with pytest.raises(ValueError, match="prompt too long"):
        engine.add_request(list(range(2, 2 + engine.max_model_len)), GREEDY)
    with pytest.raises(ValueError, match="temperature"):
        engine.add_request("x", SamplingParams(temperature=-1.0))
    with pytest.raises(ValueError, match="vocabulary"):
        engine.add_request([10**7], GREEDY)


def test_abort_frees_blocks_and_prefix_cache_is_counted(model_dirs: dict[str, Path]) -> None:
    engine = _engine(model_dirs["llama"])
    system = list(range(100, 140))  # 40 shared tokens: 10 full blocks
    engine.add_request([*system, 5, 6], GREEDY, request_id="a")
    engine.step()
    engine.step()
    assert engine.stats().num_kv_blocks_used > 0
    assert engine.abort("a") and not engine.abort("a")
    assert engine.stats().num_kv_blocks_used == 0 and not engine.has_unfinished()
    engine.generate([[*system, 7, 8]], GREEDY)
    st = engine.stats()
    assert st.prefix_cache_hits >= 40 and 0 < st.prefix_cache_hit_rate < 1
    assert st.computed_prompt_tokens < st.prompt_tokens
    assert st.num_requests_aborted == 1 and st.num_requests_finished == 1
    assert st.time_to_first_token_s.count == 2 and st.inter_token_latency_s.count > 0


def test_a_failing_step_fails_its_requests_and_the_engine_lives_on(
    model_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _engine(model_dirs["gpt2"])
    real_run = engine.runner.run

    def broken(out: object) -> torch.Tensor:
        raise RuntimeError("device lost")

    monkeypatch.setattr(engine.runner, "run", broken)
    engine.add_request("x", GREEDY, request_id="x")
    (out,) = engine.step()
    assert out.finish_reason is FinishReason.ERROR and out.error == "engine error: RuntimeError"
    assert engine.stats().num_kv_blocks_used == 0
    monkeypatch.setattr(engine.runner, "run", real_run)
    (ok,) = engine.generate(["y"], GREEDY)
    assert ok.finish_reason is FinishReason.LENGTH and len(ok.token_ids) == 10


# -- async front --------------------------------------------------------------------------------------------
async def _collect(aengine: AsyncLLMEngine, prompt: str, params: SamplingParams) -> list[object]:
    return [ev async for ev in aengine.generate(prompt, params)]


async def test_async_concurrent_callers_match_the_sync_engine(model_dirs: dict[str, Path]) -> None:
    aengine = AsyncLLMEngine(_engine(model_dirs["falcon"]))
    try:
        results = await asyncio.gather(*[_collect(aengine, p, GREEDY) for p in PROMPTS])
    finally:
        aengine.shutdown()
    want = _reference(model_dirs["falcon"], PROMPTS, 10)
    for events, ref in zip(results, want, strict=True):
        tokens = [t for ev in events if isinstance(ev, TokenEvent) for t in ev.token_ids]
        assert tokens == ref
        last = events[-1]
        assert isinstance(last, FinishedEvent) and last.reason is FinishReason.LENGTH
        assert last.usage.completion_tokens == 10


async def test_async_cancel_frees_blocks(model_dirs: dict[str, Path]) -> None:
    aengine = AsyncLLMEngine(_engine(model_dirs["llama"]))
    long = SamplingParams(max_tokens=200, temperature=0.0, ignore_eos=True)
    try:

        async def consume_two() -> None:
            n = 0
            async for _ in aengine.generate(PROMPTS[1], long):
                n += 1
                if n == 2:
                    return  # the caller goes away mid-generation

        await consume_two()
        for _ in range(100):  # the abort is applied before the engine's next step
            st = aengine.stats()
            if st.num_kv_blocks_used == 0 and st.num_running == 0:
                break
            await asyncio.sleep(0.02)
        st = aengine.stats()
        assert st.num_kv_blocks_used == 0 and st.num_running == 0 and st.num_requests_aborted == 1

        task = asyncio.ensure_future(_collect(aengine, PROMPTS[0], long))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):
            if aengine.stats().num_requests_aborted == 2:
                break
            await asyncio.sleep(0.02)
        assert aengine.stats().num_requests_aborted == 2
        assert aengine.stats().num_kv_blocks_used == 0
    finally:
        aengine.shutdown()


async def test_async_full_queue_and_bad_input(model_dirs: dict[str, Path]) -> None:
    engine = _engine(model_dirs["gpt2"], max_waiting=1, max_num_seqs=1)
    aengine = AsyncLLMEngine(engine)
    try:
        with pytest.raises(ValueError, match="temperature"):
            await _collect(aengine, "x", SamplingParams(temperature=-2.0))
        slow = SamplingParams(max_tokens=30, temperature=0.0, ignore_eos=True)
        tasks = [asyncio.ensure_future(_collect(aengine, "x", slow)) for _ in range(6)]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        rejected = [r for r in results if isinstance(r, EngineOverloaded)]
        done = [r for r in results if isinstance(r, list)]
        assert rejected and done
        assert all(isinstance(r[-1], FinishedEvent) for r in done)
        assert not any(isinstance(ev, ErrorEvent) for r in done for ev in r)
    finally:
        aengine.shutdown()


async def test_shutdown_fails_open_streams_and_empties_the_engine(model_dirs: dict[str, Path]) -> None:
    engine = _engine(model_dirs["gpt2"])
    aengine = AsyncLLMEngine(engine)
    agen = aengine.generate("x", SamplingParams(max_tokens=200, temperature=0.0, ignore_eos=True))
    first = await agen.__anext__()
    assert isinstance(first, TokenEvent)
    await asyncio.to_thread(aengine.shutdown)
    rest = [ev async for ev in agen]
    assert isinstance(rest[-1], ErrorEvent) and "shut down" in rest[-1].message
    assert not engine.has_unfinished() and engine.stats().num_kv_blocks_used == 0

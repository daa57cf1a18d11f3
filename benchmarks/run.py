"""Run the openai_utils benchmarks and print one table of results with their goals.

    python benchmarks/run.py              every topic, full length
    python benchmarks/run.py --quick      shorter runs, for the CI smoke test
    python benchmarks/run.py --only NAME  one topic (see TOPICS)

The exit code is 0 even when a goal is missed: timings on shared machines are too noisy to fail
a build on, so each row prints "goal met" or "goal MISSED" for a person to read instead. A
benchmark that crashes still fails the run, since then nothing was measured.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the checkout's openai_utils and tests.fake_server, from any cwd

from timing import Row, print_comparisons, print_table  # noqa: E402  (needs the path above)

TOPICS = ("overhead", "import", "cache", "async", "parallel", "peers", "local", "responses", "store")
"""Each name is a module benchmarks/bench_<name>.py with `run(quick: bool) -> list[Row]`:
adding a topic is adding its name here. Modules load only when their topic runs."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the openai_utils benchmarks.")
    parser.add_argument("--quick", action="store_true", help="shorter runs (CI smoke test)")
    parser.add_argument("--only", choices=TOPICS, metavar="NAME", help=f"run one topic: {', '.join(TOPICS)}")
    args = parser.parse_args(argv)

    print(
        f"openai_utils benchmarks ({'quick' if args.quick else 'full'} run): "
        f"Python {platform.python_version()}, openai {version('openai')}, {platform.machine()}"
    )
    rows: list[Row] = []
    for topic in (args.only,) if args.only else TOPICS:
        module = importlib.import_module(f"bench_{topic}")
        print(f"  {topic}: {(module.__doc__ or topic).strip().splitlines()[0]}", flush=True)
        started = time.perf_counter()
        rows += module.run(args.quick)
        print(f"    done in {time.perf_counter() - started:.1f} s", flush=True)

    print()
    print_table(rows)
    goals = [row.met for row in rows if row.met is not None]
    print(f"\n{goals.count(True)} goal(s) met, {goals.count(False)} MISSED")
    comparisons = [row.comparison for row in rows if row.comparison is not None]
    if comparisons:
        print("\nSide by side (costs: lower is better; ours/X below 1.00x means openai_utils costs less):\n")
        print_comparisons(comparisons)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Compare this checkout's benchmarks with an earlier commit's, measured in one run.

    python benchmarks/compare.py REF                 every topic, REF against this checkout
    python benchmarks/compare.py REF --only cache    one topic
    python benchmarks/compare.py REF --quick --rounds 3

Why one run: on a shared machine the same benchmark moves by 2x between minutes, so numbers
taken on different days say little. Here REF's tree (from `git archive`, in a temporary folder
removed at the end) and this checkout take turns, topic by topic and round by round, with the
order flipped every round so that a drift in the machine's load falls on both alike. Each side
runs its own benchmarks/run.py against its own openai_utils, in its own process.

The table shows, for each row both sides printed, the median over the rounds of each number in
its value, and after/before for each: below 1 means this checkout's number is smaller (faster
for a time, lower for a ratio). Rows whose value has no number (the pass/fail checks) are left
out. The exit code is 0 unless a run crashed: this reports, a person judges.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import TOPICS  # noqa: E402  (needs the path above)

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
COLUMNS = re.compile(r"\s{2,}")

Key = tuple[str, str]
"""(topic, measure): how a row is found again in the other side's output."""


def parse_table(output: str) -> dict[Key, str]:
    """The rows of run.py's table, as (topic, measure) -> value; columns are 2+ spaces apart."""
    rows: dict[Key, str] = {}
    lines = output.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("topic ")) + 2
    except StopIteration:
        raise SystemExit(f"no results table in the benchmark's output:\n{output}") from None
    for line in lines[start:]:
        if not line.strip():
            break
        if line.startswith("-"):
            continue
        cells = COLUMNS.split(line.strip())
        if len(cells) >= 3:
            rows[(cells[0], cells[1])] = cells[2]
    return rows


def numbers(value: str) -> list[float]:
    return [float(n.replace(",", "")) for n in NUMBER.findall(value)]


def run_side(tree: Path, topic: str, quick: bool) -> dict[Key, str]:
    command = [sys.executable, str(tree / "benchmarks" / "run.py"), "--only", topic, *(["--quick"] if quick else [])]
    done = subprocess.run(command, cwd=tree, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed in {tree}:\n{done.stdout}\n{done.stderr}")
    return parse_table(done.stdout)


def export(ref: str, into: Path) -> None:
    """REF's files, as committed, into `into` (no worktree, no change to this repository)."""
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, capture_output=True, check=False)
    if archive.returncode != 0:
        raise SystemExit(f"git archive {ref} failed: {archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)


def compare(before: list[dict[Key, str]], after: list[dict[Key, str]]) -> list[tuple[str, str, str, str, str]]:
    """One line per row found on both sides with the same count of numbers in every round."""
    lines = []
    for key in after[0]:
        b_values = [numbers(side[key]) for side in before if key in side]
        a_values = [numbers(side[key]) for side in after if key in side]
        counts = {len(v) for v in b_values + a_values}
        if len(b_values) != len(before) or len(a_values) != len(after) or len(counts) != 1 or counts == {0}:
            continue
        b_mid = [median(v[i] for v in b_values) for i in range(counts.pop())]
        a_mid = [median(v[i] for v in a_values) for i in range(len(b_mid))]
        ratio = " / ".join(f"{a / b:.2f}" if b else "-" for a, b in zip(a_mid, b_mid, strict=True))
        lines.append((key[0], key[1], " / ".join(f"{v:g}" for v in b_mid), " / ".join(f"{v:g}" for v in a_mid), ratio))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compare benchmarks with an earlier commit, in one run.")
    parser.add_argument("ref", help="the commit to compare against (any git revision)")
    parser.add_argument("--only", choices=TOPICS, metavar="NAME", help=f"one topic: {', '.join(TOPICS)}")
    parser.add_argument("--quick", action="store_true", help="each side's shorter runs")
    parser.add_argument("--rounds", type=int, default=3, help="turns each side takes per topic (default 3)")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="openai_utils-compare-"))
    try:
        export(args.ref, workdir)
        header = ("topic", "measure", f"before ({args.ref})", "after (this checkout)", "after/before")
        table: list[tuple[str, str, str, str, str]] = []
        for topic in (args.only,) if args.only else TOPICS:
            if not (workdir / "benchmarks" / f"bench_{topic}.py").is_file():
                print(f"  {topic}: {args.ref} has no such benchmark; skipped", flush=True)
                continue
            before: list[dict[Key, str]] = []
            after: list[dict[Key, str]] = []
            for round_ in range(args.rounds):
                sides = [(workdir, before), (ROOT, after)]
                for tree, results in sides if round_ % 2 == 0 else sides[::-1]:
                    results.append(run_side(tree, topic, args.quick))
                print(f"  {topic}: round {round_ + 1} of {args.rounds} done", flush=True)
            table += compare(before, after)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    print()
    for row in [header, *table]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The skips for what lives outside the project: one line saying what to do, and a failure under CI.

Each case runs pytest on tests/test_contract.py (and the small tests/test_api.py, so that something
passes) in a subprocess, with OPENAI_UTILS_SPECS naming an empty folder, so the contract module
skips at once without starting Prism.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.shared_files import REQUIRE_VARIABLE, SPECS_VARIABLE

ROOT = Path(__file__).resolve().parents[1]


def run_contract_tests(tmp_path: Path, require: bool) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != REQUIRE_VARIABLE}
    env[SPECS_VARIABLE] = str(tmp_path)
    if require:
        env[REQUIRE_VARIABLE] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_contract.py", "tests/test_api.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_missing_specs_skip_the_module_in_one_line_saying_where_to_put_them(tmp_path: Path) -> None:
    done = run_contract_tests(tmp_path, require=False)
    assert done.returncode == 0, done.stdout + done.stderr
    [line] = [line for line in done.stdout.splitlines() if line.startswith("SKIPPED")]
    assert "openai-openapi.prism-core.yaml" in line and f"{SPECS_VARIABLE}={tmp_path}" in line
    assert "passed, 1 skipped" in done.stdout


def test_under_ci_the_same_skip_fails_the_run(tmp_path: Path) -> None:
    done = run_contract_tests(tmp_path, require=True)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{REQUIRE_VARIABLE}=1: these tests must run here" in done.stdout
    assert "skipped, but required: contract tests need the published API specs" in done.stdout

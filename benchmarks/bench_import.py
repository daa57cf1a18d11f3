"""Import time of openai_utils against the openai SDK, each in fresh interpreters.

Why: scripts and notebooks import openai_utils on every start, often without making a call,
so the SDK (and tiktoken) must load on first use, not at import. Each import is timed inside a
new `python -c` process, since a module imports only once per process; the two modules
alternate so that drift hits both equally, and a first untimed run of each writes the bytecode
caches so that no run pays for compiling (the children write them even where
PYTHONDONTWRITEBYTECODE is set, as users' installs have them). The import is also set against
the start of the interpreter itself, timed in the same alternation, which says how much the
library adds to every script on any machine; and the standard modules only some uses need
must not be loaded by the import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from timing import Row, check_row, info_row, median, ratio_row

__all__ = ["run"]

TOPIC = "import"
ROOT = Path(__file__).resolve().parent.parent
GOAL_RATIO = 0.20
GOAL_STARTUP_RATIO = 1.25
"""`import openai_utils` against the start of the interpreter itself (`python -c pass`, with
site): the issue's cut from 32 ms to 20 ms (0.625x) applied to the 2.0x measured here before
(median of 25 alternated runs, bytecode cached)."""
LAZY_MODULES = ("openai", "tiktoken", "chevron", "dotenv", "xllamacpp", "gguf", "numpy")
"""Must not be loaded by `import openai_utils`: they cost more than the whole library."""
DEFERRED_MODULES = ("configparser", "difflib", "tempfile", "openai_utils.local", "hashlib", "pickle")
"""Loaded on use, not by `import openai_utils`: config files read, a suggestion made in a
warning, a cache compacted, the local model's client asked for, a cache key made, a cache opened."""
STDLIB_UNUSED = ("dataclasses", "inspect", "ast")
"""Not loaded by `import openai_utils` at all (~15 ms together): its value objects are
NamedTuples and slotted classes, and `inspect` is imported only to adapt an old-form hook."""
CHECKED = LAZY_MODULES + DEFERRED_MODULES + STDLIB_UNUSED

_CHILD = """
import sys, time
start = time.perf_counter()
import {module}
elapsed = time.perf_counter() - start
import json
print(json.dumps({{"seconds": elapsed, "loaded": [m for m in {lazy!r} if m in sys.modules]}}))
"""
_STARTUP = "pass"
_ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def run(quick: bool) -> list[Row]:
    """Median import time of each module over N fresh processes, their ratio, and what got loaded."""
    runs = 5 if quick else 15
    ours_ms: list[float] = []
    sdk_ms: list[float] = []
    startup_ms: list[float] = []
    loaded: set[str] = set()
    _import_in_child("openai_utils")
    _import_in_child("openai")
    for _ in range(runs):
        seconds, modules = _import_in_child("openai_utils")
        ours_ms.append(seconds * 1000)
        loaded.update(modules)
        sdk_ms.append(_import_in_child("openai")[0] * 1000)
        startup_ms.append(_startup() * 1000)

    rows = [
        info_row(TOPIC, f"import openai_utils, median of {runs} fresh processes", f"{median(ours_ms):.1f} ms"),
        info_row(TOPIC, f"import openai, median of {runs} fresh processes", f"{median(sdk_ms):.1f} ms"),
        ratio_row(TOPIC, "import openai_utils / import openai", median(ours_ms) / median(sdk_ms), GOAL_RATIO),
        info_row(TOPIC, f"python -c pass (interpreter start), median of {runs}", f"{median(startup_ms):.1f} ms"),
        ratio_row(
            TOPIC, "import openai_utils / python -c pass", median(ours_ms) / median(startup_ms), GOAL_STARTUP_RATIO
        ),
    ]
    rows += [
        check_row(
            TOPIC, f"'{name}' in sys.modules after import openai_utils", name not in loaded, "not loaded", "LOADED"
        )
        for name in CHECKED
    ]
    return rows


def _import_in_child(module: str) -> tuple[float, list[str]]:
    """Time `import module` in a new interpreter run from the project root (so the checkout is
    what gets imported); return the seconds and which of CHECKED ended up loaded."""
    code = _CHILD.format(module=module, lazy=CHECKED)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=_ENV)
    if result.returncode != 0:
        raise RuntimeError(f"import {module} failed in a fresh interpreter:\n{result.stderr}")
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    return answer["seconds"], answer["loaded"]


def _startup() -> float:
    """Seconds for a new interpreter to start and exit doing nothing: the yardstick of the import."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", _STARTUP], cwd=ROOT, check=True, env=_ENV)
    return time.perf_counter() - start

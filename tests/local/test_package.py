"""The subpackage as a whole: importing it loads neither the engine nor the converter's packages."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.local.helpers import ROOT

HEAVY = ("xllamacpp", "gguf", "safetensors", "numpy", "openai")


def test_importing_the_local_package_loads_nothing_heavy() -> None:
    script = (
        "import json, sys\n"
        "import openai_utils.local\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []

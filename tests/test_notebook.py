"""Notebooks as users run them: examples/quickstart.ipynb and the progress bar, in a real Jupyter kernel.

nbclient starts an ipykernel (the "python3" kernel of this interpreter), runs every cell, and
collects what the notebook would show. A cell that raises fails the test; so does anything on
the cells' stderr that is a warning or an error (tqdm's "IProgress not found", a cut-off answer,
an openai_utils ERROR). The quick start runs on the embedded local model, so it needs the engine
(`python -m openai_utils local setup`) and skips without it, as tests/local/ does.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat", reason="needs nbformat, nbclient and ipykernel: pip install -e '.[test]'")
nbclient = pytest.importorskip("nbclient", reason="needs nbformat, nbclient and ipykernel: pip install -e '.[test]'")
pytest.importorskip("ipykernel", reason="needs nbformat, nbclient and ipykernel: pip install -e '.[test]'")

from tests.local.helpers import ENGINE_MISSING  # noqa: E402 - only once the kernel tools are there

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart.ipynb"
CELL_TIMEOUT = 300
"""Seconds one cell may take: the local model's first answer includes starting its server."""
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def kernel_env() -> dict[str, str]:
    """This environment, less any secret: the kernel imports openai_utils from this checkout."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OPENAI_", "AZURE_")) or key == "OPENAI_UTILS_CACHE_DIR"
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["JUPYTER_PLATFORM_DIRS"] = "1"  # jupyter_core's own paths, without its migration warning
    return env


def execute(notebook: Any, cwd: Path) -> Any:
    """Run every cell in a fresh kernel started in `cwd`; raise on the first cell that fails."""
    from traitlets.config import Config

    config = Config()
    if os.name == "posix":
        # ipc, not tcp: a kernel on tcp warns that its traffic is unencrypted, even on loopback.
        config.KernelManager.transport = "ipc"
        config.KernelManager.ip = str(cwd / "kernel")
    client = nbclient.NotebookClient(
        notebook, kernel_name="python3", timeout=CELL_TIMEOUT, resources={"metadata": {"path": str(cwd)}}, config=config
    )
    client.execute(cwd=str(cwd), env=kernel_env())
    return notebook


def outputs(notebook: Any) -> Iterator[Any]:
    for cell in notebook.cells:
        if cell.cell_type == "code":
            yield from cell.outputs


def stderr_text(notebook: Any) -> str:
    return "".join(
        output.text for output in outputs(notebook) if output.output_type == "stream" and output.name == "stderr"
    )


def stderr_of(cell: Any) -> list[str]:
    """The lines one cell printed on stderr."""
    return "".join(output.text for output in cell.outputs if output.get("name") == "stderr").splitlines()


def assert_clean(notebook: Any) -> None:
    """No cell raised, and nothing on stderr warns or errs."""
    assert [output for output in outputs(notebook) if output.output_type == "error"] == []
    noise = stderr_text(notebook).lower()
    assert "warn" not in noise and "error" not in noise and "iprogress" not in noise, stderr_text(notebook)


def code_notebook(*sources: str) -> Any:
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])


# -- the shipped quick start ------------------------------------------------------------------


def test_quickstart_runs_clean_in_a_kernel_and_a_rerun_comes_from_the_cache(tmp_path: Path) -> None:
    pytest.importorskip("xllamacpp", reason=ENGINE_MISSING, exc_type=ImportError)
    first = execute(nbformat.read(QUICKSTART, as_version=4), tmp_path)
    assert_clean(first)
    printed = {
        index: "".join(o.text for o in cell.outputs if o.get("name") == "stdout")
        for index, cell in enumerate(first.cells)
        if cell.cell_type == "code"
    }
    assert all(text.strip() for index, text in printed.items() if "print(" in first.cells[index].source), printed
    bars = [output for output in outputs(first) if output.output_type == "display_data"]
    has_widgets = _imports("ipywidgets")
    if has_widgets:
        assert [bar.data["text/plain"].split(":")[0] for bar in bars if WIDGET_VIEW in bar.data] == ["LLMCall.map"]
    else:
        assert "LLMCall.map: 100%" in stderr_text(first)
    stats = first.cells[-1].outputs[0].text
    assert "SmolLM2" in stats and stats.startswith("model calls 6, cached calls 0,")
    assert (tmp_path / "quickstart.pickle").is_file()

    again = execute(nbformat.read(QUICKSTART, as_version=4), tmp_path)
    assert_clean(again)
    assert again.cells[-1].outputs[0].text.startswith("model calls 0, cached calls 6,")  # no model call the second time


def test_the_quickstart_ships_without_outputs() -> None:
    notebook = nbformat.read(QUICKSTART, as_version=4)
    nbformat.validate(notebook)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")


# -- the progress bar in a kernel -------------------------------------------------------------

MAP_TWELVE = (
    "from openai_utils.parallel import map_calls\nresults = map_calls(lambda x: x * 2, range(12))\nprint(sum(results))"
)


def test_a_kernel_without_ipywidgets_gets_the_text_bar_and_no_warning(tmp_path: Path) -> None:
    notebook = execute(
        code_notebook("import sys\nsys.modules['ipywidgets'] = None  # as if not installed", MAP_TWELVE), tmp_path
    )
    assert_clean(notebook)
    assert "calls: 100%" in stderr_text(notebook) and "12/12" in stderr_text(notebook)
    assert not any(output.output_type == "display_data" for output in outputs(notebook))
    assert [output.text for output in notebook.cells[-1].outputs if output.get("name") == "stdout"] == ["132\n"]


def test_a_kernel_with_ipywidgets_gets_the_widget_and_no_warning(tmp_path: Path) -> None:
    if not _imports("ipywidgets"):
        pytest.skip("ipywidgets is not installed: the widget bar is not drawn here")
    notebook = execute(code_notebook(MAP_TWELVE), tmp_path)
    assert_clean(notebook)
    assert stderr_text(notebook) == ""
    widgets = [
        output for output in outputs(notebook) if output.output_type == "display_data" and WIDGET_VIEW in output.data
    ]
    assert len(widgets) == 1 and widgets[0].data["text/plain"].startswith("calls:")


def _imports(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None and sys.modules.get(name, True) is not None


# -- the library's warnings under a cell ------------------------------------------------------


def test_a_warning_shows_under_its_cell_once_and_logging_config_takes_over(tmp_path: Path) -> None:
    from tests.fake_server import FakeOpenAIServer

    cut_off = 'client().send_message([{"role": "user", "content": "%s"}], max_tokens=2);'
    with FakeOpenAIServer() as server:
        notebook = execute(
            code_notebook(
                "import os\nos.environ['OPENAI_API_KEY'] = 'sk-test'\n"
                f"from openai_utils import client, force_default_value\nforce_default_value('base_url', {server.base_url!r})",
                cut_off % "one two three four",
                "import logging\nlogging.basicConfig(format='ROOT %(levelname)s %(message)s')\n"
                + cut_off % "five six seven eight",
            ),
            tmp_path,
        )
    assert stderr_of(notebook.cells[0]) == []
    [warning] = stderr_of(notebook.cells[1])
    assert warning.startswith("openai_utils WARNING: ") and "cut off" in warning
    [routed] = stderr_of(notebook.cells[2])
    assert routed.startswith("ROOT WARNING ") and "cut off" in routed

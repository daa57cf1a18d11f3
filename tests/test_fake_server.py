"""Prove the fake server against the real openai SDK, so other tests can trust it.

These tests double as documentation of how openai 3.x reacts to each fault.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageFunctionToolCall, ChatCompletionMessageParam

try:  # works whether or not tests/ is a package / the repo root is on sys.path
    from tests.fake_server import FakeOpenAIServer, Fault, default_reply, embedding_vector
except ImportError:  # pragma: no cover - depends on how pytest was configured
    from fake_server import FakeOpenAIServer, Fault, default_reply, embedding_vector  # type: ignore[no-redef]

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello brave new world"}]
EXPECTED = "echo: hello brave new world"


@pytest.fixture
def srv() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def sdk() -> Iterator[Callable[..., openai.OpenAI]]:
    """Makes SDK clients and closes them after the test, so none leaves a socket to the collector."""
    made: list[openai.OpenAI] = []

    def make(base_url: str, max_retries: int = 0) -> openai.OpenAI:
        made.append(openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=max_retries))
        return made[-1]

    yield make
    for c in made:
        c.close()


@pytest.fixture
def client(srv: FakeOpenAIServer) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=0)
    yield c
    c.close()


def test_chat_parses_and_is_recorded(srv: FakeOpenAIServer, client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="gpt-4o-mini", messages=USER, temperature=0)
    assert isinstance(r, openai.types.chat.ChatCompletion)
    assert r.id == "chatcmpl-1"
    assert r.model == "gpt-4o-mini"
    assert r.choices[0].message.content == EXPECTED
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (4, 5, 9)

    [req] = srv.requests
    assert req.method == "POST"
    assert req.path == "/v1/chat/completions"
    assert req.body == {"model": "gpt-4o-mini", "messages": USER, "temperature": 0}
    assert req.headers["authorization"] == "Bearer sk-test"
    assert srv.requests_to("/chat/completions") == [req]
    assert srv.requests_to("/embeddings") == []


def test_x_request_id_on_success(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="m", messages=USER)
    assert raw.headers["x-request-id"] == "req_1"
    assert raw.parse().choices[0].message.content == EXPECTED


def test_list_content_custom_reply_and_no_v1_prefix(srv: FakeOpenAIServer, sdk: Callable[..., openai.OpenAI]) -> None:
    srv.reply = lambda body: "fixed answer"
    c = sdk(srv.url)  # no /v1
    r = c.chat.completions.create(model="m", messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    assert r.choices[0].message.content == "fixed answer"
    assert srv.requests[0].path == "/chat/completions"

    srv.reply = default_reply
    r = c.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
    )
    assert r.choices[0].message.content == "echo: a b"


def test_n_gives_distinct_choices(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="m", messages=USER, n=3)
    texts = [c.message.content for c in r.choices]
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert texts == [EXPECTED, EXPECTED + " [1]", EXPECTED + " [2]"]


def test_max_tokens_truncates(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="m", messages=USER, max_tokens=2)
    assert r.choices[0].message.content == "echo: hello"
    assert r.choices[0].finish_reason == "length"
    assert r.usage is not None and r.usage.completion_tokens == 2
    r = client.chat.completions.create(model="m", messages=USER, max_completion_tokens=100)
    assert r.choices[0].finish_reason == "stop"


def test_tool_call(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "__tool__"}])
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)  # the fake server answers with a function tool
    assert call.id == "call_1"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}


def test_bad_request_and_unknown_path(srv: FakeOpenAIServer, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="m", messages=[])
    assert exc.value.type == "invalid_request_error"
    with pytest.raises(openai.NotFoundError) as nf:
        client.get("/nope", cast_to=object)
    assert nf.value.response.headers["x-request-id"] == "req_2"
    assert isinstance(nf.value.body, dict) and "message" in nf.value.body


def test_scripted_429_with_retry_after(srv: FakeOpenAIServer, client: openai.OpenAI) -> None:
    srv.script(Fault.status(429, headers={"Retry-After": "2"}))
    with pytest.raises(openai.RateLimitError) as exc:
        client.chat.completions.create(model="m", messages=USER)
    err = exc.value
    assert err.status_code == 429
    assert err.response.headers["retry-after"] == "2"
    assert err.request_id == "req_1"
    assert err.code == "rate_limit_exceeded"
    assert err.type == "requests"
    # The script is consumed: the next request succeeds.
    assert client.chat.completions.create(model="m", messages=USER).choices[0].message.content == EXPECTED


def test_status_with_custom_body_and_retries(srv: FakeOpenAIServer, sdk: Callable[..., openai.OpenAI]) -> None:
    quota = {"error": {"message": "quota", "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}}
    srv.script(Fault.status(429, body=quota))
    c = sdk(srv.base_url)
    with pytest.raises(openai.RateLimitError) as exc:
        c.models.list()
    assert exc.value.code == "insufficient_quota"

    # With retries on, the SDK honours retry-after-ms and succeeds on the third try.
    srv.script(Fault.status(500, headers={"retry-after-ms": "10"}), Fault.status(503, headers={"retry-after-ms": "10"}))
    retrying = sdk(srv.base_url, max_retries=2)
    assert [m.id for m in retrying.models.list()] == ["gpt-4o-mini"]
    assert len(srv.requests_to("/models")) == 4


def test_reset_raises_connection_error(srv: FakeOpenAIServer, client: openai.OpenAI) -> None:
    srv.script(Fault.reset())
    with pytest.raises(openai.APIConnectionError) as exc:
        client.chat.completions.create(model="m", messages=USER)
    assert not isinstance(exc.value, openai.APITimeoutError)
    assert len(srv.requests) == 1  # the request was received (and recorded) before the RST
    assert client.chat.completions.create(model="m", messages=USER).choices[0].message.content == EXPECTED


def test_hang_raises_timeout(srv: FakeOpenAIServer, client: openai.OpenAI) -> None:
    srv.script(Fault.hang(5))
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="m", messages=USER, timeout=0.2)
    # A hung request must not block others.
    assert client.chat.completions.create(model="m", messages=USER).choices[0].message.content == EXPECTED


def test_delay_answers_normally(srv: FakeOpenAIServer, client: openai.OpenAI) -> None:
    srv.script(Fault.delay(0.05))
    assert client.chat.completions.create(model="m", messages=USER).choices[0].message.content == EXPECTED


def test_hold_answers_once_released_and_arrivals_follow_the_servers_clock(
    srv: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    release = threading.Event()
    srv.script(Fault.hold(release))
    srv.clock = lambda: 42.0
    answers: list[str | None] = []
    caller = threading.Thread(
        target=lambda: answers.append(
            client.chat.completions.create(model="m", messages=USER).choices[0].message.content
        )
    )
    caller.start()
    assert srv.wait_in_flight(1)
    assert answers == []  # held: nothing came back yet
    release.set()
    caller.join(30)
    assert answers == [EXPECTED]
    assert [r.time for r in srv.requests] == [42.0]


def test_malformed_json(srv: FakeOpenAIServer, client: openai.OpenAI) -> None:
    # openai 3.x does not wrap this: the body is declared application/json, the
    # SDK calls response.json(), and the raw json.JSONDecodeError (a ValueError,
    # not an openai.OpenAIError) escapes; it is not retried either.
    srv.script(Fault.malformed())
    with pytest.raises(json.JSONDecodeError):
        client.chat.completions.create(model="m", messages=USER)
    # Through with_raw_response the bad body is readable as-is.
    srv.script(Fault.malformed())
    raw = client.chat.completions.with_raw_response.create(model="m", messages=USER)
    assert raw.status_code == 200
    assert raw.http_response.text.startswith('{"id": "chatcmpl-broken"')
    with pytest.raises(ValueError):
        raw.parse()


def _content(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_stream_matches_non_stream_and_usage(srv: FakeOpenAIServer, client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(model="m", messages=USER).choices[0].message.content

    chunks = list(client.chat.completions.create(model="m", messages=USER, stream=True))
    assert _content(chunks) == plain == EXPECTED
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)
    assert len(chunks) == 1 + len(EXPECTED.split()) + 1

    chunks = list(
        client.chat.completions.create(model="m", messages=USER, stream=True, stream_options={"include_usage": True})
    )
    assert _content(chunks) == EXPECTED
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    assert srv.requests[-1].body["stream"] is True


def test_stream_tool_call(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "__tool__"}], stream=True)
    )
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].id == "call_1" and calls[0].function and calls[0].function.name == "get_weather"
    assert len(calls) >= 3
    args = "".join(tc.function.arguments or "" for tc in calls if tc.function)
    assert json.loads(args) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_stream_drop_raises_after_k_chunks(client: openai.OpenAI, srv: FakeOpenAIServer) -> None:
    srv.script(Fault.stream_drop(2))
    got = []
    stream = client.chat.completions.create(model="m", messages=USER, stream=True)
    # The server closes mid chunked body and httpx2 raises RemoteProtocolError; recent SDKs
    # wrap it as APIConnectionError (not a timeout), openai 3.0 lets it through unwrapped.
    import httpx2

    with pytest.raises((openai.APIConnectionError, httpx2.RemoteProtocolError)) as exc:
        for chunk in stream:
            got.append(chunk)
    assert not isinstance(exc.value, openai.APITimeoutError)
    assert "incomplete chunked read" in str(exc.value.__cause__ or exc.value)
    assert len(got) == 1 + 2  # role chunk, then exactly k content chunks
    assert _content(got) == "echo: hello "
    # Non-stream requests are unaffected by the next request.
    assert client.chat.completions.create(model="m", messages=USER).choices[0].message.content == EXPECTED


def test_embeddings_single_list_and_base64(srv: FakeOpenAIServer, client: openai.OpenAI) -> None:
    single = client.embeddings.create(model="text-embedding-3-small", input="hello")
    # openai 3.x asks for base64 by default and decodes it back to floats.
    assert srv.requests[-1].body["encoding_format"] == "base64"
    assert single.data[0].embedding == embedding_vector("hello")
    assert len(single.data[0].embedding) == 8
    assert abs(sum(x * x for x in single.data[0].embedding) - 1) < 1e-5

    many = client.embeddings.create(model="text-embedding-3-small", input=["hello", "world", "hello"])
    vecs = [d.embedding for d in many.data]
    assert [d.index for d in many.data] == [0, 1, 2]
    assert vecs[0] == vecs[2] == single.data[0].embedding
    assert vecs[0] != vecs[1]
    assert many.usage.prompt_tokens == 3

    floats = client.embeddings.create(model="e", input="hello", encoding_format="float")
    assert srv.requests[-1].body["encoding_format"] == "float"
    assert floats.data[0].embedding == single.data[0].embedding  # float32-exact in both formats

    tokens = client.embeddings.create(model="e", input=[[1, 2], [3]], encoding_format="float")
    assert len(tokens.data) == 2 and tokens.data[0].embedding != tokens.data[1].embedding


def test_embeddings_refuse_more_inputs_than_the_spec_allows(srv: FakeOpenAIServer, client: openai.OpenAI) -> None:
    ok = client.embeddings.create(model="e", input=["x"] * 2048, encoding_format="float")
    assert len(ok.data) == 2048
    with pytest.raises(openai.BadRequestError, match="at most 2048"):
        client.embeddings.create(model="e", input=["x"] * 2049, encoding_format="float")


def test_models_list(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini"]


def test_azure_layout(srv: FakeOpenAIServer) -> None:
    az = openai.AzureOpenAI(azure_endpoint=srv.url, api_version="2024-10-21", api_key="k", max_retries=0)
    r = az.chat.completions.create(model="my-deploy", messages=USER)
    assert r.model == "my-deploy"
    assert r.choices[0].message.content == EXPECTED
    req = srv.requests[-1]
    assert req.path == "/openai/deployments/my-deploy/chat/completions"
    assert req.query == {"api-version": "2024-10-21"}
    assert req.headers["api-key"] == "k"
    assert "authorization" not in req.headers

    e = az.embeddings.create(model="emb-deploy", input="hello")
    assert e.data[0].embedding == embedding_vector("hello")
    assert srv.requests[-1].path == "/openai/deployments/emb-deploy/embeddings"
    assert srv.requests_to("/embeddings") == [srv.requests[-1]]


def test_script_path_filter(srv: FakeOpenAIServer, client: openai.OpenAI) -> None:
    srv.script(Fault.status(500), path="/embeddings")
    # Chat is untouched while an embeddings-only fault is pending.
    assert client.chat.completions.create(model="m", messages=USER).choices[0].message.content == EXPECTED
    with pytest.raises(openai.InternalServerError) as exc:
        client.embeddings.create(model="e", input="x")
    assert exc.value.type == "server_error"
    client.embeddings.create(model="e", input="x")  # consumed


def test_fail_always_and_reset(srv: FakeOpenAIServer, client: openai.OpenAI) -> None:
    srv.fail_always(Fault.status(503))
    for _ in range(3):
        with pytest.raises(openai.InternalServerError):
            client.models.list()
    srv.fail_always(None)
    client.models.list()

    srv.script(Fault.status(500))
    srv.fail_always(Fault.status(401))
    srv.reset()
    assert srv.requests == [] and srv.max_in_flight == 0
    client.models.list()  # neither the script nor fail_always survived reset
    assert len(srv.requests) == 1


def test_max_in_flight_counts_concurrency(sdk: Callable[..., openai.OpenAI]) -> None:
    with FakeOpenAIServer() as server:
        c = sdk(server.base_url)
        results: list[str] = []
        lock = threading.Lock()

        def call(i: int, gate: threading.Semaphore | None, barrier: threading.Barrier | None) -> None:
            if barrier is not None:
                barrier.wait(timeout=30)
            if gate is not None:
                gate.acquire()
            try:
                r = c.chat.completions.create(model="m", messages=[{"role": "user", "content": f"q{i}"}])
            finally:
                if gate is not None:
                    gate.release()
            with lock:
                results.append(r.choices[0].message.content or "")

        def run(
            workers: int, gate: threading.Semaphore | None, barrier: threading.Barrier | None, in_flight: int
        ) -> None:
            """Every answer waits until `in_flight` requests are at the server together."""
            release = threading.Event()
            server.fail_always(Fault.hold(release))
            threads = [threading.Thread(target=call, args=(i, gate, barrier)) for i in range(workers)]
            for t in threads:
                t.start()
            try:
                assert server.wait_in_flight(in_flight)
            finally:
                release.set()
                for t in threads:
                    t.join(timeout=30)
            server.fail_always(None)

        # Unbounded: 20 threads released together are all in flight at once.
        run(20, None, threading.Barrier(20), in_flight=20)
        assert server.max_in_flight == 20
        # The handler decrements after its answer is sent, so the clients may finish first.
        deadline = time.monotonic() + 30
        while server.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.in_flight == 0
        assert sorted(results) == sorted(f"echo: q{i}" for i in range(20))

        # Bounded by a semaphore of 5: the server sees exactly that bound.
        server.reset()
        results.clear()
        run(20, threading.Semaphore(5), None, in_flight=5)
        assert server.max_in_flight == 5
        assert len(server.requests) == 20 and len(results) == 20

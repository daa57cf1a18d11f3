"""An OpenAI-compatible HTTP server on 127.0.0.1 for tests and benchmarks.

Why a real socket server instead of mocking the SDK's transport: the things this
project cares about (retries, timeouts, connection resets, half-sent streams,
Azure URL layout, concurrency limits) live in the HTTP layer, so the only honest
way to exercise them is to let the official ``openai`` SDK talk real HTTP/1.1.

Standard library only, so it works in any environment the tests run in.

Semantics worth knowing when writing tests against it:

* Faults are chosen per request: ``fail_always`` (if set) wins, otherwise the
  first scripted fault whose path filter matches is consumed, otherwise the
  request succeeds normally.  ``latency`` is applied to every request first.
* ``Fault.stream_drop(k)`` counts *content* chunks: the role chunk that opens a
  stream is always sent, then ``k`` word (or tool-argument) chunks, then the
  connection is closed (FIN, not RST, so the client deterministically sees the
  partial data before the error).  A non-stream request that gets a
  ``stream_drop`` fault is answered normally.
* ``Fault.reset()`` closes with SO_LINGER 0, i.e. a real TCP RST.
* ``Fault.hold(event)`` answers normally once the test sets ``event`` (or the
  server stops): a slow request whose end the test chooses, with no clock involved.
* ``clock`` stamps each arrival (``RecordedRequest.time``): ``time.monotonic`` unless
  a test gives the server the simulated clock its client runs on.
* ``Fault.trickle(s)`` answers correctly (plain or streamed) but sends the body one byte
  every ``s`` seconds, as a slow or hostile gateway can; ``Fault.deep_json(d)`` answers 200
  with a JSON object nested ``d`` deep (for a stream, as its first event);
  ``Fault.gzip_bomb(n)`` answers 200 with ``Content-Encoding: gzip``: a valid answer followed by
  ``n`` spaces, a few kilobytes on the wire; ``Fault.echo_credentials(code)`` answers an error
  whose message and body repeat the credentials the request carried.
* ``/responses`` (the Responses API, plain and streamed) and the refusals a chat request for a
  Responses-only model gets (``responses_only``) live in tests/fake_responses.py.
* Every response (except ``reset``) carries ``x-request-id: req_<n>`` where
  ``n`` is the 1-based arrival number of the request; chat ids are
  ``chatcmpl-<n>`` with the same ``n``.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import re
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests import fake_responses

__all__ = ["Fault", "FakeOpenAIServer", "RecordedRequest"]

EMBEDDING_DIMENSIONS = 8
MAX_EMBEDDING_INPUTS = 2048  # the input array's maxItems in the published specs; more is a 400
TOOL_TRIGGER = "__tool__"
TOOL_CALL_ID = "call_1"
TOOL_NAME = "get_weather"
TOOL_ARGUMENTS = '{"city": "Paris"}'
# Streamed in these pieces; they must concatenate to TOOL_ARGUMENTS.
TOOL_ARGUMENT_PIECES = ('{"city":', ' "Par', 'is"}')
MODELS = ("gpt-4o-mini",)
MALFORMED_BODY = b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{'

_WORD_PIECES = re.compile(r"\s*\S+\s*|\s+")

# (type, message, code) used when a status fault or a handler error has no body.
_DEFAULT_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("invalid_request_error", "Invalid request.", None),
    401: (
        "invalid_request_error",
        "Incorrect API key provided: sk-****. You can find your API key at https://platform.openai.com/account/api-keys.",
        "invalid_api_key",
    ),
    403: ("permission_error", "You are not allowed to access this resource.", "permission_denied"),
    404: ("invalid_request_error", "The requested resource was not found.", "not_found"),
    405: ("invalid_request_error", "Method not allowed.", "method_not_allowed"),
    408: ("timeout_error", "Request timed out.", "timeout"),
    409: ("conflict_error", "The request conflicts with the current state of the resource.", "conflict"),
    422: ("invalid_request_error", "Unprocessable entity.", None),
    429: ("requests", "Rate limit reached for requests. Please try again later.", "rate_limit_exceeded"),
    500: ("server_error", "The server had an error while processing your request.", None),
    502: ("server_error", "Bad gateway.", None),
    503: ("server_error", "The engine is currently overloaded, please try again later.", None),
    504: ("server_error", "Gateway timeout.", None),
}


def error_body(status: int, message: str | None = None, *, type: str | None = None, code: Any = None) -> dict[str, Any]:
    """Build OpenAI's error envelope so the SDK maps fields onto ``err.code``/``err.type``."""
    default_type, default_message, default_code = _DEFAULT_ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", f"HTTP {status}", None)
    )
    return {
        "error": {
            "message": message if message is not None else default_message,
            "type": type if type is not None else default_type,
            "param": None,
            "code": code if code is not None else default_code,
        }
    }


@dataclass
class RecordedRequest:
    """What the client actually sent, so tests can assert on wire-level behaviour."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    time: float


@dataclass(frozen=True)
class Fault:
    """One scripted behaviour for one request."""

    kind: str
    code: int = 200
    # dicts are unhashable; keep them out of the generated __hash__.
    body: dict[str, Any] | None = field(default=None, hash=False)
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0
    after_chunks: int = 0
    release: threading.Event | None = field(default=None, hash=False, compare=False)

    @staticmethod
    def status(code: int, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Fault:
        """Answer with an HTTP error (or any status) to drive the SDK's error mapping and retry logic."""
        return Fault("status", code=code, body=body, headers=tuple((headers or {}).items()))

    @staticmethod
    def reset() -> Fault:
        """Drop the connection without a response, as a crashed proxy or load balancer would."""
        return Fault("reset")

    @staticmethod
    def hang(seconds: float) -> Fault:
        """Stall long enough to trip a client-side timeout."""
        return Fault("hang", seconds=seconds)

    @staticmethod
    def malformed() -> Fault:
        """Claim JSON but send garbage, to see how callers survive a broken body."""
        return Fault("malformed")

    @staticmethod
    def stream_drop(after_chunks: int) -> Fault:
        """Cut a stream mid-way, to test partial-output handling."""
        return Fault("stream_drop", after_chunks=after_chunks)

    @staticmethod
    def delay(seconds: float) -> Fault:
        """Answer correctly but late, e.g. to order concurrent requests or test cache hits."""
        return Fault("delay", seconds=seconds)

    @staticmethod
    def hold(release: threading.Event) -> Fault:
        """Answer correctly once the test sets `release`: a slow request that ends when the test says."""
        return Fault("hold", release=release)

    @staticmethod
    def trickle(seconds_per_byte: float) -> Fault:
        """Answer correctly, one byte of the body at a time: no gap is long, the whole is endless."""
        return Fault("trickle", seconds=seconds_per_byte)

    @staticmethod
    def deep_json(depth: int = 100_000) -> Fault:
        """A 200 whose JSON object nests `depth` levels deep, as a hostile server can send."""
        return Fault("deep_json", after_chunks=depth)

    @staticmethod
    def gzip_bomb(padding: int) -> Fault:
        """A gzip-encoded 200 that expands to `padding` bytes more than the answer it carries."""
        return Fault("gzip_bomb", after_chunks=padding)

    @staticmethod
    def echo_credentials(code: int = 401) -> Fault:
        """An error answer that repeats the key or token the request carried, as some servers do."""
        return Fault("echo_credentials", code=code)


def deep_json(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


@functools.lru_cache(maxsize=4)
def gzip_bomb(answer: bytes, padding: int) -> bytes:
    """`answer` and `padding` spaces, gzipped (about 1 KB per MiB of padding). Cached: the
    compression takes a moment, and tests measuring memory call it first."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = b" " * (1 << 20)
    parts = [packer.compress(answer)]
    for start in range(0, padding, len(block)):
        parts.append(packer.compress(block[: min(len(block), padding - start)]))
    parts.append(packer.flush())
    return b"".join(parts)


def _content_text(content: Any) -> str:
    """Flatten str or list-of-parts message content so word counts and echoes work for both."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return " ".join(parts)
    return ""


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def default_reply(body: dict[str, Any]) -> str:
    """Echo the last user message so tests can tell which request produced which answer."""
    return "echo: " + _last_user_text(body)


def _word_pieces(text: str) -> list[str]:
    """Split into words keeping whitespace attached, so ''.join(pieces) == text exactly."""
    return _WORD_PIECES.findall(text)


def _word_count(text: str) -> int:
    return len(text.split())


def _truncate_words(text: str, limit: int) -> str:
    return "".join(_word_pieces(text)[:limit]).rstrip()


def embedding_vector(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """Deterministic unit vector from sha256, rounded to float32 so base64 and float formats agree exactly."""
    raw = b""
    counter = 0
    while len(raw) < 4 * dimensions:
        raw += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    values = [int.from_bytes(raw[4 * i : 4 * i + 4], "little") / 2**31 - 1.0 for i in range(dimensions)]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    normalised = [v / norm for v in values]
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *normalised)))


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer tuned for many concurrent keep-alive clients and quiet teardown."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 256
    allow_reuse_address = True
    fake: FakeOpenAIServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up (timeouts, drops) are expected here; tracebacks would only be noise.
        pass


class _Handler(BaseHTTPRequestHandler):
    """Per-connection handler; all state lives on the owning FakeOpenAIServer."""

    protocol_version = "HTTP/1.1"
    server_version = "FakeOpenAI/1.0"
    # Set per request by Fault.trickle: seconds between two bytes of the body.
    trickle = 0.0
    # Headers and body go out in two writes; with Nagle on, the body waits for the client's
    # delayed ACK and every request takes ~40 ms of kernel timer instead of ~1 ms.
    disable_nagle_algorithm = True
    sys_version = ""
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.server.fake._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.fake._track(self.connection, False)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (TimeoutError, ConnectionError, OSError):
            self.close_connection = True

    def do_GET(self) -> None:
        self.server.fake._handle(self)

    do_POST = do_GET
    do_PUT = do_GET
    do_DELETE = do_GET
    do_PATCH = do_GET

    # ---- low-level I/O helpers used by FakeOpenAIServer ----

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size_line = self.rfile.readline()
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send_bytes(self, status: int, payload: bytes, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.write_body(payload)

    def write_body(self, data: bytes, framed: bool = False) -> None:
        """Write body bytes (as chunks of the chunked encoding if `framed`), trickled if asked."""
        if not self.trickle:
            self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data) if framed else data)
            return
        for i in range(len(data)):
            if self.server.fake._stopping.is_set():
                raise _StreamDropped()
            byte = data[i : i + 1]
            self.wfile.write(b"1\r\n%s\r\n" % byte if framed else byte)
            self.wfile.flush()
            self.server.fake._sleep(self.trickle)

    def send_json(self, status: int, obj: Any, headers: dict[str, str]) -> None:
        self.send_bytes(status, json.dumps(obj).encode(), "application/json", headers)

    def start_stream(self, headers: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def send_chunk(self, data: bytes) -> None:
        # wfile is unbuffered (wbufsize=0): each write goes straight to the socket, i.e. flushed.
        self.write_body(data, framed=True)
        self.wfile.flush()

    def send_event(self, obj: Any) -> None:
        payload = obj if isinstance(obj, str) else json.dumps(obj)
        self.send_chunk(f"data: {payload}\n\n".encode())

    def end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def abort(self, rst: bool) -> None:
        """Close the socket under the client; RST for resets, FIN for mid-stream drops."""
        self.close_connection = True
        try:
            if rst:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            self.connection.close()


class _StreamDropped(Exception):
    """Internal signal: the scripted number of chunks went out, stop writing."""


class FakeOpenAIServer:
    """Scriptable OpenAI look-alike that records every request it sees."""

    def __init__(self, latency: float = 0.0, reply: Callable[[dict[str, Any]], str] | None = None) -> None:
        self.latency = latency
        self.reply: Callable[[dict[str, Any]], str] = reply or default_reply
        self.clock: Callable[[], float] = time.monotonic
        """Stamps each arrival (`RecordedRequest.time`); a test may give the clock its client runs on."""
        self.requests: list[RecordedRequest] = []
        self.usage_details: dict[str, Any] = {}
        """Merged into every chat reply's usage (e.g. `prompt_tokens_details` with `cached_tokens`)."""
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._script: list[tuple[Fault, str | None]] = []
        self._always: Fault | None = None
        self._counter = 0
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.responses_only: dict[str, str] = {}
        """Models whose chat requests get a refusal, and its form: "404" or "400" (fake_responses.py)."""
        from tests.fake_batches import FakeBatches

        self.batch_api = FakeBatches(self)
        """The /files and /batches endpoints (tests/fake_batches.py)."""

    # ---- lifecycle ----

    def start(self) -> FakeOpenAIServer:
        """Bind an ephemeral port so parallel test runs never collide."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.fake = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut open keep-alive connections so no handler thread outlives the test."""
        httpd = self._httpd
        if httpd is None:
            return
        self._stopping.set()  # wakes hang/delay/latency sleeps
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeOpenAIServer is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    # ---- scripting ----

    def script(self, *faults: Fault, path: str | None = None) -> None:
        """Queue faults (FIFO); ``path`` restricts them to requests whose path ends with it."""
        with self._lock:
            self._script.extend((fault, path) for fault in faults)

    def fail_always(self, fault: Fault | None) -> None:
        """Apply one fault to every request (takes precedence over the script) until cleared with None."""
        with self._lock:
            self._always = fault

    def wait_in_flight(self, count: int, timeout: float = 30.0) -> bool:
        """Block until at least `count` requests are being answered at once; False after `timeout`.

        With `Fault.hold` this makes "they were all in flight together" a fact rather than a
        race against the machine's speed; the timeout only catches a hang.
        """
        deadline = time.monotonic() + timeout
        while self.in_flight < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.001)
        return True

    def wait_for_requests(self, suffix: str, count: int, timeout: float = 30.0) -> list[RecordedRequest]:
        """The requests to `suffix` once at least `count` were recorded (or all there are after
        `timeout`, which only catches a hang).

        A client that gives up first (a timeout shorter than the machine is slow) has still sent
        its request; on a busy machine the server may record it a moment later.
        """
        deadline = time.monotonic() + timeout
        while len(found := self.requests_to(suffix)) < count and time.monotonic() < deadline:
            time.sleep(0.001)
        return found

    def requests_to(self, suffix: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith(suffix)]

    def reset(self) -> None:
        """Forget everything scripted or recorded so one server can be shared across tests.

        A client has its answer before the handler that sent it has finished its bookkeeping,
        so first let requests still being wrapped up finish (a few ms; up to 5 s on a machine
        that is very busy) rather than count them into the next test.
        """
        deadline = time.monotonic() + 5.0
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.001)
        with self._lock:
            self.requests.clear()
            self._script.clear()
            self._always = None
            self.max_in_flight = self.in_flight
        self.batch_api.reset()

    def _track(self, conn: socket.socket, opened: bool) -> None:
        with self._lock:
            if opened:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _next_fault_locked(self, path: str) -> Fault | None:
        if self._always is not None:
            return self._always
        for i, (fault, suffix) in enumerate(self._script):
            if suffix is None or path.endswith(suffix):
                del self._script[i]
                return fault
        return None

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    # ---- request handling ----

    def _handle(self, h: _Handler) -> None:
        arrived = self.clock()
        h.trickle = 0.0
        raw = h.read_body()
        split = urlsplit(h.path)
        path = split.path
        body: Any = None
        if raw:
            text = raw.decode("utf-8", errors="replace")
            try:
                body = json.loads(text)
            except ValueError:
                body = text
        record = RecordedRequest(
            method=h.command,
            path=path,
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in h.headers.items()},
            body=body,
            time=arrived,
        )
        with self._lock:
            self._counter += 1
            n = self._counter
            self.requests.append(record)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            # Chosen at arrival, under the same lock as the counter, so the n-th request gets the n-th fault.
            fault = self._next_fault_locked(path)
        try:
            self._respond(h, n, record, fault)
        except _StreamDropped:
            h.abort(rst=False)
        except OSError:
            # The client went away (e.g. it timed out during a hang); nothing left to say.
            h.close_connection = True
        finally:
            with self._lock:
                self.in_flight -= 1

    def _respond(self, h: _Handler, n: int, req: RecordedRequest, fault: Fault | None) -> None:
        headers = {"x-request-id": f"req_{n}"}
        self._sleep(self.latency)
        if fault is not None:
            if fault.kind == "reset":
                h.abort(rst=True)
                return
            if fault.kind in ("hang", "delay"):
                self._sleep(fault.seconds)
                fault = None
            elif fault.kind == "hold":
                while fault.release is not None and not fault.release.wait(0.05) and not self._stopping.is_set():
                    pass
                fault = None
            elif fault.kind == "status":
                extra = dict(fault.headers)
                extra.update(headers)
                h.send_json(fault.code, fault.body if fault.body is not None else error_body(fault.code), extra)
                return
            elif fault.kind == "malformed":
                h.send_bytes(200, MALFORMED_BODY, "application/json", headers)
                return
            elif fault.kind == "trickle":
                h.trickle = fault.seconds
                fault = None
            elif fault.kind in ("deep_json", "gzip_bomb", "echo_credentials"):
                self._hostile(h, req, fault, headers)
                return
            elif fault.kind != "stream_drop":
                raise ValueError(f"unknown fault kind {fault.kind!r}")

        if self.batch_api.respond(h, req, headers):
            return
        endpoint, deployment = self._route(req.path)
        method_ok = {"/chat/completions": "POST", "/embeddings": "POST", "/models": "GET", "/responses": "POST"}
        if endpoint is None or (endpoint.startswith("/models/") and req.method != "GET"):
            h.send_json(404, error_body(404, f"Unknown request URL: {req.method} {req.path}."), headers)
        elif endpoint.startswith("/models/"):
            model_id = endpoint[len("/models/") :]
            h.send_json(200, self._model(model_id), headers)
        elif method_ok[endpoint] != req.method:
            h.send_json(405, error_body(405, f"Method {req.method} not allowed on {req.path}."), headers)
        elif endpoint == "/models":
            h.send_json(200, {"object": "list", "data": [self._model(m) for m in MODELS]}, headers)
        elif endpoint == "/embeddings":
            status, obj = self._embeddings(req.body, deployment)
            h.send_json(status, obj, headers)
        elif endpoint == "/responses":
            fake_responses.answer(self, h, n, req.body, deployment, headers, fault)
        else:
            self._chat(h, n, req.body, deployment, headers, fault)

    def _hostile(self, h: _Handler, req: RecordedRequest, fault: Fault, headers: dict[str, str]) -> None:
        """The answers a broken or hostile server sends: see Fault.deep_json, gzip_bomb, echo_credentials."""
        stream = isinstance(req.body, dict) and req.body.get("stream") is True
        if fault.kind == "echo_credentials":
            sent = req.headers.get("authorization") or req.headers.get("api-key") or ""
            body = error_body(fault.code, f"Incorrect API key provided: {sent}", code="invalid_api_key")
            body["error"]["received"] = {"authorization": sent}
            h.send_json(fault.code, body, headers)
        elif fault.kind == "deep_json" and stream:
            h.start_stream(headers)
            h.send_event(deep_json(fault.after_chunks))
            h.send_event("[DONE]")
            h.end_stream()
        elif fault.kind == "deep_json":
            h.send_bytes(200, deep_json(fault.after_chunks).encode(), "application/json", headers)
        else:
            answer = b'data: {"choices": []}\n\ndata: ' if stream else json.dumps(self._chat_body(req.body)).encode()
            h.send_bytes(
                200,
                gzip_bomb(answer, fault.after_chunks),
                "text/event-stream" if stream else "application/json",
                {**headers, "Content-Encoding": "gzip"},
            )

    @staticmethod
    def _chat_body(body: Any) -> dict[str, Any]:
        """A small valid chat completion, for the answers that carry one."""
        text = default_reply(body) if isinstance(body, dict) else "echo: "
        return {
            "id": "chatcmpl-bomb",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        }

    @staticmethod
    def _route(path: str) -> tuple[str | None, str | None]:
        """Map /v1/x, /x, /openai/x and /openai/deployments/{d}/x onto x plus the deployment."""
        path = path.rstrip("/") or "/"
        deployment: str | None = None
        if path.startswith("/openai/"):
            path = path[len("/openai") :]
            if path.startswith("/deployments/"):
                parts = path.split("/", 3)  # ["", "deployments", name, rest]
                if len(parts) < 4:
                    return None, None
                deployment = parts[2]
                path = "/" + parts[3]
        elif path.startswith("/v1/"):
            path = path[len("/v1") :]
        if path in ("/chat/completions", "/embeddings", "/models", "/responses"):
            return path, deployment
        if path.startswith("/models/") and path.count("/") == 2:
            return path, deployment
        return None, None

    @staticmethod
    def _model(model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": 0, "owned_by": "fake"}

    # ---- embeddings ----

    def _embeddings(self, body: Any, deployment: str | None) -> tuple[int, dict[str, Any]]:
        if not isinstance(body, dict) or "input" not in body:
            return 400, error_body(400, "'input' is a required property", code=None)
        raw_input = body["input"]
        if isinstance(raw_input, str):
            texts = [raw_input]
        elif isinstance(raw_input, list) and raw_input and all(isinstance(x, int) for x in raw_input):
            texts = [repr(raw_input)]  # a single token list
        elif isinstance(raw_input, list) and raw_input:
            texts = [x if isinstance(x, str) else repr(x) for x in raw_input]
        else:
            return 400, error_body(400, "'input' must be a non-empty string or array", code=None)
        if isinstance(raw_input, list) and len(raw_input) > MAX_EMBEDDING_INPUTS:
            return 400, error_body(400, f"'input' must have at most {MAX_EMBEDDING_INPUTS} items", code=None)
        dimensions = body.get("dimensions")
        dims = dimensions if isinstance(dimensions, int) and dimensions > 0 else EMBEDDING_DIMENSIONS
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(texts):
            vec = embedding_vector(text, dims)
            encoded: Any = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode() if as_base64 else vec
            data.append({"object": "embedding", "index": i, "embedding": encoded})
        tokens = sum(max(1, _word_count(t)) for t in texts)
        return 200, {
            "object": "list",
            "data": data,
            "model": deployment or body.get("model") or "text-embedding-3-small",
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    # ---- chat completions ----

    def _chat(
        self,
        h: _Handler,
        n: int,
        body: Any,
        deployment: str | None,
        headers: dict[str, str],
        fault: Fault | None,
    ) -> None:
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not messages:
            h.send_json(400, error_body(400, "'messages' must be a non-empty array.", code=None), headers)
            return
        model = deployment or body.get("model") or "gpt-4o-mini"
        refusal = fake_responses.chat_refusal(self, model)
        if refusal is not None:
            h.send_json(*refusal, headers)
            return
        count = body.get("n") if isinstance(body.get("n"), int) and body.get("n", 0) > 0 else 1
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        limit = limit if isinstance(limit, int) and limit >= 0 else None
        prompt_tokens = sum(_word_count(_content_text(m.get("content"))) for m in messages if isinstance(m, dict))
        is_tool = _last_user_text(body) == TOOL_TRIGGER

        texts: list[str] = []
        finishes: list[str] = []
        if is_tool:
            texts = [TOOL_ARGUMENTS] * count
            finishes = ["tool_calls"] * count
        else:
            base = self.reply(body)
            for i in range(count):
                text = base if i == 0 else f"{base} [{i}]"
                if limit is not None and _word_count(text) > limit:
                    texts.append(_truncate_words(text, limit))
                    finishes.append("length")
                else:
                    texts.append(text)
                    finishes.append("stop")
        completion_tokens = sum(_word_count(t) for t in texts)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            **self.usage_details,
        }
        created = int(time.time())
        cid = f"chatcmpl-{n}"

        if body.get("stream") is True:
            drop_after = fault.after_chunks if fault is not None and fault.kind == "stream_drop" else None
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._stream_chat(
                h, cid, created, model, texts, finishes, is_tool, usage, include_usage, headers, drop_after
            )
            return

        choices = []
        for i, (text, finish) in enumerate(zip(texts, finishes, strict=True)):
            message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
            if is_tool:
                message["content"] = None
                message["tool_calls"] = [
                    {
                        "id": TOOL_CALL_ID,
                        "type": "function",
                        "function": {"name": TOOL_NAME, "arguments": TOOL_ARGUMENTS},
                    }
                ]
            choices.append({"index": i, "message": message, "finish_reason": finish, "logprobs": None})
        h.send_json(
            200,
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": choices,
                "usage": usage,
                "system_fingerprint": None,
            },
            headers,
        )

    def _stream_chat(
        self,
        h: _Handler,
        cid: str,
        created: int,
        model: str,
        texts: list[str],
        finishes: list[str],
        is_tool: bool,
        usage: dict[str, int],
        include_usage: bool,
        headers: dict[str, str],
        drop_after: int | None,
    ) -> None:
        def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
            obj = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": None,
                "choices": choices,
            }
            obj.update(extra)
            return obj

        def choice(i: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"index": i, "delta": delta, "finish_reason": finish, "logprobs": None}

        sent = 0

        def content(obj: dict[str, Any]) -> None:
            nonlocal sent
            if drop_after is not None and sent >= drop_after:
                raise _StreamDropped()
            h.send_event(obj)
            sent += 1

        h.start_stream(headers)
        for i, (text, finish) in enumerate(zip(texts, finishes, strict=True)):
            if is_tool:
                first_call = {
                    "index": 0,
                    "id": TOOL_CALL_ID,
                    "type": "function",
                    "function": {"name": TOOL_NAME, "arguments": ""},
                }
                h.send_event(chunk([choice(i, {"role": "assistant", "content": None, "tool_calls": [first_call]})]))
                for piece in TOOL_ARGUMENT_PIECES:
                    content(chunk([choice(i, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})]))
            else:
                h.send_event(chunk([choice(i, {"role": "assistant", "content": ""})]))
                for piece in _word_pieces(text):
                    content(chunk([choice(i, {"content": piece})]))
            h.send_event(chunk([choice(i, {}, finish)]))
        if drop_after is not None:
            # Fewer content chunks than requested: still drop before the terminator, as promised.
            raise _StreamDropped()
        if include_usage:
            h.send_event(chunk([], usage=usage))
        h.send_event("[DONE]")
        h.end_stream()

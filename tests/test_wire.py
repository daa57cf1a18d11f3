"""Reading an answer within bounds, piece by piece: decoding under the cap, and the deadline.

The end-to-end behaviour (trickling servers, bombs, deep JSON) is in test_transport.py; these
pin the parts on their own, with a fake clock where time matters.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator

import httpx2
import pytest

from openai_utils import MalformedResponseError
from openai_utils.wire import STEP, BoundedStream, Bounds, Deadline, Decoder, _Reader

TEXT = b'{"answer": "' + b"na " * 50_000 + b'"}'


def decoded(encoding: str, body: bytes, piece: int = 1000) -> bytes:
    decoder = Decoder(encoding)
    out = [part for start in range(0, len(body), piece) for part in decoder.feed(body[start : start + piece])]
    return b"".join(out + list(decoder.finish()))


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", gzip.compress(TEXT)),
        ("x-gzip", gzip.compress(TEXT)),
        ("deflate", zlib.compress(TEXT)),
        ("gzip", gzip.compress(TEXT[:1000]) + gzip.compress(TEXT[1000:])),  # two gzip members
        ("deflate, gzip", gzip.compress(zlib.compress(TEXT))),  # listed in the order applied
        ("identity", TEXT),
        ("", TEXT),
    ],
    ids=["gzip", "x-gzip", "deflate", "two-members", "two-layers", "identity", "none"],
)
def test_every_accepted_encoding_decodes_to_the_text(encoding: str, body: bytes) -> None:
    assert decoded(encoding, body) == TEXT
    assert decoded(encoding, body, piece=len(body) or 1) == TEXT


def test_raw_deflate_is_decoded() -> None:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert decoded("deflate", packer.compress(TEXT) + packer.flush()) == TEXT


def test_no_step_yields_more_than_STEP_bytes_however_compressible() -> None:
    bomb = gzip.compress(b" " * (50 * STEP))  # about 6 KB
    decoder = Decoder("gzip")
    sizes = [len(part) for part in decoder.feed(bomb)]
    assert max(sizes) <= STEP and sum(sizes) == 50 * STEP


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, br"])
def test_encodings_not_asked_for_are_refused(encoding: str) -> None:
    with pytest.raises(MalformedResponseError, match="not asked for"):
        Decoder(encoding)


def test_a_broken_gzip_body_is_a_malformed_answer() -> None:
    with pytest.raises(MalformedResponseError, match="gzip encoding is broken"):
        decoded("gzip", b"\x1f\x8b" + b"not gzip at all" * 10)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def request() -> httpx2.Request:
    return httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")


def test_the_deadline_is_checked_after_each_read() -> None:
    clock = Clock()
    deadline = Deadline(1.0, clock)

    def trickle() -> Iterator[bytes]:
        for byte in b"0123456789":
            clock.now += 0.25  # each read takes a quarter of TIMEOUT: no gap is too long
            yield bytes([byte])

    stream = BoundedStream(trickle(), _Reader(Decoder(""), Bounds(1000, deadline), request()))
    received = b""
    with pytest.raises(httpx2.ReadTimeout, match="TIMEOUT"):
        for piece in stream:
            received += piece
    assert received == b"012"  # the fourth read ended after the deadline


def test_a_restarted_deadline_gives_the_next_wait_its_full_time() -> None:
    clock = Clock()
    deadline = Deadline(1.0, clock)
    clock.now += 0.9
    deadline.restart()
    clock.now += 0.9
    assert deadline.left() == pytest.approx(0.1)


def test_the_cap_counts_decoded_bytes_not_wire_bytes() -> None:
    body = gzip.compress(b" " * 10_000)
    stream = BoundedStream(iter([body]), _Reader(Decoder("gzip"), Bounds(9_999, Deadline(60)), request()))
    with pytest.raises(MalformedResponseError, match=r"MAX_RESPONSE_BYTES \(9999 bytes\)"):
        list(stream)
    exactly = BoundedStream(iter([body]), _Reader(Decoder("gzip"), Bounds(10_000, Deadline(60)), request()))
    assert b"".join(exactly) == b" " * 10_000

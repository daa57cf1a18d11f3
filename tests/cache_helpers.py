"""Helpers shared by the cache tests: answers to store, a fresh view of a file, raw records."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

from openai_utils.cache import ResponseCache

ROOT = Path(__file__).resolve().parents[1]


def record(i: int) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "choices": [{"message": {"role": "assistant", "content": f"answer {i} " + "x" * 300}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 60, "total_tokens": 70},
    }


def fresh(path: Path) -> ResponseCache:
    """A cache object that reads the file from scratch, as a new process would."""
    return ResponseCache(path.resolve())


def raw_record(key: str, value_bytes: bytes) -> bytes:
    payload = struct.pack(">H", len(key)) + key.encode() + value_bytes
    return struct.pack(">II", len(payload), zlib.crc32(payload)) + payload

"""Structured outputs: turning a `response_format` (a JSON-schema dict or a pydantic model class)
into what the API takes, and the answer's text back into the structure asked for.

The wire form is plain JSON, so it goes into the cache key like any parameter, and only the
answer's text is cached: the parsed value (a pydantic object, say) is rebuilt on every call,
hit or miss. pydantic is only needed when a model class is passed.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from typing import Any

from .exceptions import InvalidRequestError

__all__ = ["response_format_for_wire"]

Parser = Callable[[str], Any]


def response_format_for_wire(value: Any) -> tuple[Any, Parser | None]:
    """(what to send as response_format, how to parse the answer), for what the caller gave.

    - a pydantic model class: a strict json_schema built from it; answers parse into the class;
    - {"type": "json_schema", ...} or {"type": "json_object"}: sent as given; answers parse as JSON;
    - {"type": "text"}: sent as given; no parsing;
    - any other dict is taken as a bare JSON schema and wrapped as json_schema (strict only when
      the schema itself says additionalProperties: false, since strict mode requires it).
    """
    if value is None:
        return None, None
    if isinstance(value, type) and hasattr(value, "model_json_schema") and hasattr(value, "model_validate_json"):
        schema = _strict(value.model_json_schema())
        wire = {"type": "json_schema", "json_schema": {"name": value.__name__, "schema": schema, "strict": True}}
        return wire, value.model_validate_json
    if not isinstance(value, Mapping):
        raise InvalidRequestError(
            f"response_format must be a JSON-schema dict or a pydantic model class, not {type(value).__name__}"
        )
    kind = value.get("type")
    if kind in ("json_schema", "json_object"):
        return dict(value), json.loads
    if kind == "text":
        return dict(value), None
    strict = value.get("additionalProperties") is False
    wire = {
        "type": "json_schema",
        "json_schema": {"name": str(value.get("title") or "response"), "schema": dict(value), "strict": strict},
    }
    return wire, json.loads


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic schema made acceptable to strict mode: every object closed, every property
    required, and no `default` (strict mode rejects it; defaults mean nothing for an answer)."""
    result = copy.deepcopy(schema)
    _close(result)
    return result


_SCHEMA_MAPS = ("properties", "$defs", "definitions")
"""Keys whose value maps names to schemas (so a property may itself be called "default")."""


def _close(node: Any) -> None:
    if isinstance(node, list):
        for child in node:
            _close(child)
        return
    if not isinstance(node, dict):
        return
    node.pop("default", None)
    if node.get("type") == "object" and isinstance(node.get("properties"), dict):
        node["additionalProperties"] = False
        node["required"] = list(node["properties"])
    for key, child in node.items():
        if key in _SCHEMA_MAPS and isinstance(child, dict):
            for schema in child.values():
                _close(schema)
        elif isinstance(child, (dict, list)):
            _close(child)

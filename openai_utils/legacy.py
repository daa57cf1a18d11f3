"""Custom clients written for the module this library replaces, run on the new machinery.

There a subclass overrode `_raw_model_call(self, model, chat_api_params)`, returning the
provider's response, and optionally `_raw_model_response_extractor(self, response)`, returning
the assistant message as a dict. Here one attempt is `_raw_model_call(self, request, timeout)`
returning the server's JSON. `adapt(cls)` runs when such a subclass is created
(`OpenAIClient.__init_subclass__`): an override of the old form is wrapped into the new one, so
retries, the cache and the usage counts apply to it; one that cannot be wrapped fails right
there with a ConfigError that says how to port it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .exceptions import ConfigError, InvalidRequestError

__all__ = ["adapt"]

LEGACY_PARAMETERS = ["model", "chat_api_params"]
PORTING = (
    "port it to `_raw_model_call(self, request, timeout)` (one attempt: `request` is the whole "
    "body, its `model` included; return the server's JSON as a dict in the chat completions "
    "shape), or pass `backend=MockBackend(handler)` instead of subclassing (docs/custom-clients.md)"
)


def adapt(cls: type) -> None:
    """Wrap an old-form `_raw_model_call` of `cls` into the new form, or refuse it clearly."""
    for old in ("_raw_embedding_model_call", "_raw_embedding_model_response_extractor"):
        if old in cls.__dict__:
            raise ConfigError(
                f"{cls.__name__}.{old} is a hook of the module this library replaces and is never "
                "called here: port it to `_raw_embedding_call(self, request, timeout)` (return the "
                "embeddings JSON), or pass a backend (docs/custom-clients.md)"
            )
    raw = cls.__dict__.get("_raw_model_call")
    if raw is None or not _looks_legacy(raw):
        if "_raw_model_response_extractor" in cls.__dict__ and raw is not None:
            raise ConfigError(
                f"{cls.__name__}._raw_model_response_extractor is only used with the old "
                f"`_raw_model_call(self, model, chat_api_params)`; with the new hook, {PORTING}"
            )
        return
    import inspect  # here, not at import: it is costly to load, and only old-form hooks need it

    names = _parameter_names(raw)
    if inspect.iscoroutinefunction(raw) or names != LEGACY_PARAMETERS:
        raise ConfigError(
            f"{cls.__name__}._raw_model_call{inspect.signature(raw)} looks written for the module "
            f"this library replaces but cannot be adapted (expected a plain "
            f"`def _raw_model_call(self, model, chat_api_params)`): {PORTING}"
        )
    # setattr: `cls` is typed as a plain `type`, which has none of these attributes for mypy
    setattr(cls, "_legacy_raw_model_call", raw)  # noqa: B010
    setattr(cls, "_raw_model_call", _adapted_call)  # noqa: B010
    setattr(cls, "_raw_stream_call", _no_stream)  # noqa: B010


def _parameter_names(function: Callable[..., Any]) -> list[str]:
    import inspect

    parameters = list(inspect.signature(function).parameters.values())[1:]
    return [p.name for p in parameters if p.default is inspect.Parameter.empty and p.kind is not p.VAR_KEYWORD]


def _looks_legacy(function: Callable[..., Any]) -> bool:
    import inspect

    names = [p for p in inspect.signature(function).parameters][1:]
    return "chat_api_params" in names or (bool(names) and names[0] == "model")


def _adapted_call(self: Any, request: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    """One attempt through the old hook: the body split into model and parameters as it was
    there (`timeout` among them), the answer shaped into chat completions JSON."""
    params = {key: value for key, value in request.items() if key != "model"}
    params["timeout"] = timeout
    response = self._legacy_raw_model_call(request["model"], params)
    extractor = getattr(type(self), "_raw_model_response_extractor", None)
    if extractor is not None:
        return _as_completion(request["model"], extractor(self, response), _usage_of(response))
    data = _as_dict(response)
    if isinstance(data, Mapping) and "choices" in data:
        return dict(data)
    return _as_completion(request["model"], data, None)


def _no_stream(self: Any, request: Mapping[str, Any], timeout: float) -> Any:
    raise InvalidRequestError(
        f"{type(self).__name__} overrides the old `_raw_model_call(self, model, chat_api_params)`, "
        f"which answers whole replies only: call it without stream=True, or {PORTING}"
    )


def _as_dict(response: Any) -> Any:
    """An SDK object (pydantic) as its JSON dict; anything else as it is."""
    dump = getattr(response, "model_dump", None)
    return dump() if callable(dump) else response


def _usage_of(response: Any) -> Any:
    data = _as_dict(response)
    return data.get("usage") if isinstance(data, Mapping) else None


def _as_completion(model: str, message: Any, usage: Any) -> dict[str, Any]:
    message = _as_dict(message)
    body: dict[str, Any] = {
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
    }
    if usage is not None:
        body["usage"] = usage
    return body

"""LLMCall: a prompt pair (system and user templates) plus model parameters, called like a function."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from .registry import client
from .response import Reply
from .templates import render_template

__all__ = ["LLMCall"]

logger = logging.getLogger("openai_utils")


class LLMCall:
    """Render the templates, send them through `client().send_message`, keep what happened.

    After `call`, `.messages` holds what was sent and `.model_output` what came back (the
    assistant message dict, a list of them with n > 1, or None when the call failed).
    """

    def __init__(self, system_template_name: str, user_template_name: str | None = None, **model_params: Any) -> None:
        self.system_template_name = system_template_name
        self.user_template_name = user_template_name
        self.model_params = model_params
        self.messages: list[Any] | None = None
        self.model_output: Any = None

    def call(self, allow_missing_variables: bool = False, **rendering_configs: Any) -> Any:
        """Render with `rendering_configs` and call the model; return the reply's content.

        With a `response_format` in the model parameters, the parsed object instead; with n > 1,
        a list, one per choice. None when send_message returned None (every retryable attempt
        failed) or the model refused (logged as a WARNING; the refusal is in `.model_output`).
        """
        self.messages = self._render(rendering_configs, allow_missing_variables)
        self.model_output = client().send_message(self.messages, **self.model_params)
        return _content(self.model_output)

    async def acall(self, allow_missing_variables: bool = False, **rendering_configs: Any) -> Any:
        """The async form of `call`."""
        self.messages = self._render(rendering_configs, allow_missing_variables)
        self.model_output = await client().asend_message(self.messages, **self.model_params)
        return _content(self.model_output)

    def map(
        self,
        list_of_rendering_configs: Sequence[Mapping[str, Any]],
        max_workers: int | None = None,
        progress: Any = None,
        batch: bool | str = False,
    ) -> list[Any]:
        """`call` for each dict of variables, in a thread pool; results in input order.

        A failed item holds its exception object, an item whose retries ran out holds None.
        Afterwards `.messages` and `.model_output` are lists, one entry per item (see parallel.py).
        batch=True (or "auto") sends them as one batch job at the batch price (docs/batch.md).
        """
        if batch is False:
            from .parallel import map_llm_call as online_map

            return online_map(self, list_of_rendering_configs, max_workers, progress)
        from .batch_run import map_llm_call

        return map_llm_call(self, list_of_rendering_configs, batch, max_workers, progress, _content)

    def _render(self, variables: dict[str, Any], allow_missing: bool) -> list[dict[str, Any]]:
        messages = [{"role": "system", "content": render_template(self.system_template_name, variables, allow_missing)}]
        if self.user_template_name is not None:
            messages.append(
                {"role": "user", "content": render_template(self.user_template_name, variables, allow_missing)}
            )
        return messages

    def __repr__(self) -> str:
        templates = f"{self.system_template_name!r}, {self.user_template_name!r}"
        params = "".join(f", {k}={v!r}" for k, v in self.model_params.items())
        if self.messages is None:
            return f"LLMCall({templates}{params}) [not called yet]"
        if self.messages and not isinstance(self.messages[0], Mapping):  # after map()
            missing = sum(output is None for output in self.model_output)
            return (
                f"LLMCall({templates}{params}) -> mapped over {len(self.messages)} items, {missing} without an answer"
            )
        output = _content(self.model_output)
        shown = repr(output) if output is None or len(str(output)) <= 80 else repr(str(output)[:77] + "...")
        return f"LLMCall({templates}{params}) -> {shown}"


def _content(output: Any) -> Any:
    """What a call returns: the text, or the parsed object when a response_format asked for one."""
    if isinstance(output, list):
        return [_content(m) for m in output]
    if not isinstance(output, dict):
        return None
    if isinstance(output, Reply) and output.parsed is not None:
        return output.parsed
    if output.get("refusal"):
        logger.warning("the model refused: %s", output["refusal"])
        return None
    return output.get("content")

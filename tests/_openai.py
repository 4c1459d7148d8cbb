"""A canned OpenAI chat completion, for a real openai client over an ``httpx.MockTransport``."""

from __future__ import annotations

try:  # openai 3 moved to the httpx2 fork; older releases use httpx
    import httpx2 as httpx  # type: ignore[import-not-found, unused-ignore]
except ImportError:
    import httpx  # type: ignore[no-redef, unused-ignore]

__all__ = ["USAGE", "content_completion", "httpx", "tool_call_completion"]

USAGE = {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}
"""The token usage every canned completion reports."""


def tool_call_completion(model: str, function: str, arguments: str) -> httpx.Response:
    """The response to a chat completion whose one tool call is ``function(arguments)``."""
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": function, "arguments": arguments},
    }
    return _completion(model, {"role": "assistant", "content": None, "tool_calls": [call]})


def content_completion(model: str, content: str) -> httpx.Response:
    """The response to a chat completion that answers with ``content`` (JSON mode)."""
    return _completion(model, {"role": "assistant", "content": content})


def _completion(model: str, message: dict[str, object]) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
            "usage": USAGE,
        },
    )

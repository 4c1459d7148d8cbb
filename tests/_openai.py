"""A canned OpenAI chat completion, for a real openai client over an ``httpx.MockTransport``."""

from __future__ import annotations

try:  # openai 3 moved to the httpx2 fork; older releases use httpx
    import httpx2 as httpx  # type: ignore[import-not-found, unused-ignore]
except ImportError:
    import httpx  # type: ignore[no-redef, unused-ignore]

__all__ = ["httpx", "tool_call_completion"]


def tool_call_completion(model: str, function: str, arguments: str) -> httpx.Response:
    """The response to a chat completion whose one tool call is ``function(arguments)``."""
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": function, "arguments": arguments},
    }
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    return httpx.Response(
        200,
        json={
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14},
        },
    )

"""Token usage and the model behind a result: read from the completion, kept in the entry.

A hit saves what the original call spent, so the entry records it when the
result says it: the raw completion instructor attached (``_raw_response``),
or a completion returned alongside the model (``-> tuple[Model,
ChatCompletion]``). The three providers name the counts differently:

- OpenAI: ``usage.prompt_tokens`` / ``usage.completion_tokens``
- Anthropic: ``usage.input_tokens`` (plus ``cache_creation_input_tokens`` and
  ``cache_read_input_tokens``, which it counts apart) / ``usage.output_tokens``
- Bedrock (Converse, a dict): ``usage.inputTokens`` (plus
  ``cacheReadInputTokens`` and ``cacheWriteInputTokens``) / ``outputTokens``
- Google: ``usage_metadata.prompt_token_count`` (plus
  ``tool_use_prompt_token_count``) / ``candidates_token_count`` (plus
  ``thoughts_token_count``: Gemini bills its thinking as output but counts it
  apart, where OpenAI's and Anthropic's output counts already hold it)

Every prompt token counts as input, as OpenAI's ``prompt_tokens`` counts its
cached ones: cached input is priced as input (see ``pricing``).

The entry stores the counts, not a cost: the cost is worked out at each hit
from ``instructor_cache.pricing``, so a price added later applies.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, NamedTuple

from instructor_cache import pricing
from instructor_cache._raw import raw_of
from instructor_cache._savings import Savings

__all__ = ["MAX_TOKENS", "Usage", "read_usage", "usage_in", "usage_of_calls"]

MAX_TOKENS = 100_000_000
"""The most tokens one side of one call counts (no model's context comes near)."""

_COUNTS: tuple[tuple[str, str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    # container, input, output, and the counts kept apart but processed all the same
    ("usage", "prompt_tokens", "completion_tokens", (), ()),
    (
        "usage",
        "input_tokens",
        "output_tokens",
        ("cache_creation_input_tokens", "cache_read_input_tokens"),
        (),
    ),
    ("usage", "inputTokens", "outputTokens", ("cacheReadInputTokens", "cacheWriteInputTokens"), ()),
    (
        "usage_metadata",
        "prompt_token_count",
        "candidates_token_count",
        ("tool_use_prompt_token_count",),
        ("thoughts_token_count",),
    ),
)


class Usage(NamedTuple):
    """What one call spent: the model that answered (if known) and its token counts."""

    model: str | None
    input: int
    output: int

    @property
    def tokens(self) -> int:
        return self.input + self.output

    def cost(self) -> float:
        """In USD, at today's price of the model (0 for a model without one)."""
        return pricing.cost(self.model, self.input, self.output)

    def savings(self, seconds: float) -> Savings:
        return Savings(seconds, self.tokens, self.cost())

    def json(self) -> str:
        return json.dumps({"model": self.model, "input": self.input, "output": self.output})


def usage_in(value: Any, raw: Any) -> Usage | None:
    """The usage of the call that returned ``value``: from its raw completion, else from a
    completion returned beside it in a tuple, else, for a list of results of calls of their
    own (each model with its raw completion), the sum of theirs."""
    if raw is not None:
        return usage_of(raw)
    if isinstance(value, tuple):
        for item in value:
            usage = usage_of(item)
            if usage is not None:
                return usage
    if isinstance(value, list):
        # Each completion once: the same model (and call) may be in the list twice.
        raws = {id(raw): raw for raw in map(raw_of, value) if raw is not None}
        return usage_of_calls(raws.values())
    return None


def usage_of_calls(completions: Iterable[Any]) -> Usage | None:
    """The usage of several calls, one completion each (each counted once by its caller);
    ``None`` if none says, or if reading one raised: its caller has paid and gets its result."""
    try:
        return _summed([usage_of(completion) for completion in completions])
    except Exception:  # noqa: BLE001  (a provider object's property may raise anything)
        return None


def _summed(usages: list[Usage | None]) -> Usage | None:
    """Several calls' usage as one: their model if they share one (else unknown: no cost is
    better than one at the wrong price), their tokens added up, within what an entry holds."""
    known = [usage for usage in usages if usage is not None]
    if not known:
        return None
    models = {usage.model for usage in known}
    return Usage(
        models.pop() if len(models) == 1 else None,
        min(sum(usage.input for usage in known), MAX_TOKENS),
        min(sum(usage.output for usage in known), MAX_TOKENS),
    )


def usage_of(completion: Any) -> Usage | None:
    """The usage a completion reports, whichever provider's it is; ``None`` if it has none.

    By attribute or key, so a provider object that is neither pydantic nor a
    dict (and so is not stored as the raw response) still gives its usage.
    """
    if completion is None or isinstance(completion, (str, bytes, int, float)):
        return None
    for container, prompt, answer, more_given, more_produced in _COUNTS:
        counts = _field(completion, container)
        if counts is None:
            continue
        given, produced = _field(counts, prompt), _field(counts, answer)
        if _is_count(given) or _is_count(produced):
            model = _field(completion, "model")
            if not _is_name(model):
                model = _field(completion, "model_version")  # Google's name for it
            return Usage(
                model if _is_name(model) else None,
                _total(counts, (prompt, *more_given)),
                _total(counts, (answer, *more_produced)),
            )
    return None


def _total(counts: Any, names: tuple[str, ...]) -> int:
    """The counts of ``names`` added up (one not given, or not a count, is 0), within what an
    entry holds."""
    return min(sum(_count(_field(counts, name)) for name in names), MAX_TOKENS)


def read_usage(stored: Any) -> Usage | None:
    """The usage an entry recorded, or ``None`` if it is not one we wrote (then ignored:
    the entry's value is still good)."""
    if not isinstance(stored, dict):
        return None
    model: Any = stored.get("model")
    given: Any = stored.get("input")
    produced: Any = stored.get("output")
    if (model is None or isinstance(model, str)) and _is_count(given) and _is_count(produced):
        return Usage(model, given, produced)
    return None


def _is_name(model: Any) -> bool:
    """A str the entry's JSON can carry: not one with a lone surrogate (``json.loads`` accepts
    one off the wire), which would make the whole entry unreadable, and the call unstorable."""
    if not isinstance(model, str):
        return False
    try:
        model.encode()
    except UnicodeEncodeError:
        return False
    return True


def _count(number: Any) -> int:
    return number if _is_count(number) else 0


def _is_count(number: Any) -> bool:
    return type(number) is int and 0 <= number <= MAX_TOKENS


def _field(holder: Any, name: str) -> Any:
    if isinstance(holder, dict):
        return holder.get(name)
    try:
        return getattr(holder, name, None)
    except Exception:  # noqa: BLE001  (a provider object's property may raise anything)
        return None

"""The correctness checks every benchmark module raises through, so run.py sets one exit status."""


class CheckFailedError(Exception):
    """A contender returned a wrong value, or a cache that should hit did not."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailedError(message)

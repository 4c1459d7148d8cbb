"""Our stores as instructor's ``cache=``, without importing instructor.

instructor caches only through an object that passes
``isinstance(cache, instructor.cache.BaseCache)``, and ignores any other in
silence. Every built-in store derives from ``InstructorCompatible``, which
is registered once as a virtual subclass of ``BaseCache`` when
``instructor.cache`` is imported: at once if it already is, and by a finder
on ``sys.meta_path`` that reacts to that one module alone, running the
registration just after the module executes. So any import order works, and
a store made before instructor was imported is one all the same, since
registration is by class. The finder stays: ``importlib.reload`` (or an
import after the module left ``sys.modules``) executes instructor's module
again, which makes a new ``BaseCache`` and restores its own helpers, and
that execution is registered in turn.

Registration goes with taking over instructor's two cache helpers,
``load_cached_response`` and ``store_cached_response`` (its request wrapper
imports them from ``instructor.cache`` on each call). For our stores they
run through ``_instructor``: a guard that fails open, a key space of their
own, an entry checked on read. Intercepting there rather than in our stores'
``get`` leaves the decorator's hit path untouched (not even a test of the
key's length or of the caller's frame, which would cost every hit) and
tells instructor's calls apart without guessing. If a release of
instructor lacks either helper, nothing is registered and a warning says
so: a store it used raw could raise into the app, which a cache must not.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

__all__ = ["InstructorCompatible", "adopt"]

_MODULE = "instructor.cache"
_ADOPTED = "_instructor_cache_adopted"
_lock = threading.RLock()


class InstructorCompatible:
    """The stores instructor accepts as ``cache=`` once it is imported (see the module)."""

    __slots__ = ()

    @property
    def serves_sync_calls(self) -> bool:
        """Whether sync ``get``/``set`` can work, as instructor calls them even from async code."""
        return True


def adopt(module: ModuleType) -> bool:
    """Register our stores with ``module`` (``instructor.cache``) and route its helpers; once."""
    with _lock:
        if getattr(module, _ADOPTED, False):
            return True
        base = getattr(module, "BaseCache", None)
        load = getattr(module, "load_cached_response", None)
        store = getattr(module, "store_cached_response", None)
        if base is None or not callable(load) or not callable(store):
            from instructor_cache._log import warning  # noqa: PLC0415

            warning(
                "instructor_cache: this instructor has no BaseCache, load_cached_response and "
                "store_cached_response in instructor.cache, so our stores are not offered to it "
                "as cache=; cache with @instructor_cache instead"
            )
            return False
        setattr(module, "load_cached_response", _loading(load))  # noqa: B010  (a module's, untyped)
        setattr(module, "store_cached_response", _storing(store))  # noqa: B010
        base.register(InstructorCompatible)
        setattr(module, _ADOPTED, True)
        return True


def _loading(original: Callable[..., Any]) -> Callable[..., Any]:
    def load_cached_response(cache: Any, key: str, *args: Any, **kwargs: Any) -> Any:
        if isinstance(cache, InstructorCompatible):
            from instructor_cache._instructor import load  # noqa: PLC0415

            return load(original, cache, key, *args, **kwargs)
        return original(cache, key, *args, **kwargs)

    load_cached_response.__doc__ = original.__doc__
    load_cached_response.__wrapped__ = original  # type: ignore[attr-defined]
    return load_cached_response


def _storing(original: Callable[..., Any]) -> Callable[..., Any]:
    def store_cached_response(cache: Any, key: str, *args: Any, **kwargs: Any) -> None:
        if isinstance(cache, InstructorCompatible):
            from instructor_cache._instructor import store  # noqa: PLC0415

            store(original, cache, key, *args, **kwargs)
            return
        original(cache, key, *args, **kwargs)

    store_cached_response.__doc__ = original.__doc__
    store_cached_response.__wrapped__ = original  # type: ignore[attr-defined]
    return store_cached_response


class _Loader:
    """The real loader of ``instructor.cache``, adopting the module each time it has executed."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, ...
        if name == "_real":  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self._real, name)

    def create_module(self, spec: Any) -> ModuleType | None:
        create: Callable[[Any], ModuleType | None] | None = getattr(
            self._real, "create_module", None
        )
        return None if create is None else create(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__dict__.pop(_ADOPTED, None)  # a reload executes anew in the same namespace
        self._real.exec_module(module)
        adopt(module)


class _Finder:
    """On ``sys.meta_path`` for good, blind to every name but ``instructor.cache``.

    It wraps the loader of each spec it finds (``importlib.util.find_spec``
    asks without importing; the import or reload that follows executes it).
    """

    _instructor_cache_finder = True  # what ``_ours`` looks for

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: Any = None) -> Any:
        if fullname != _MODULE:
            return None
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            if _ours(finder) or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader)
                return spec
        return None


def _ours(finder: object) -> bool:
    """Whether ``finder`` is a ``_Finder`` (of any copy of this module, so never asked twice)."""
    return getattr(type(finder), "_instructor_cache_finder", False) is True


def _install() -> None:
    """Adopt ``instructor.cache`` now if it is loaded, and whenever it executes (thread-safe)."""
    with _lock:
        if not any(map(_ours, sys.meta_path)):  # one finder, even if this module runs again
            sys.meta_path.insert(0, _Finder())  # before checking, so no import slips in between
        module = sys.modules.get(_MODULE)
    if module is not None:
        if getattr(getattr(module, "__spec__", None), "_initializing", False):
            # Another thread is executing it: the import statement waits for it to finish.
            __import__(_MODULE)
        adopt(module)


_install()

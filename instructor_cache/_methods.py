"""Cached methods: bind ``self`` for the call and for the cache controls alike.

A plain function's attributes are reached through a bound method without
``self``: ``obj.method.cache_key(x)`` would key ``method(self=x)``. A
function whose first parameter is ``self`` or ``cls`` is therefore wrapped
in ``CachedMethod``, whose ``__get__`` binds the instance into ``__call__``,
``cache_key``, ``invalidate``, ``refresh`` and the batches (``map``...). Plain functions stay plain
functions, so their hits pay for no extra frame.

Both pickle and copy by reference, as methods and ``functools.lru_cache``
wrappers do: a ``CachedMethod`` as the attribute of its class, a bound one as
``getattr(instance, name)``, so ``ProcessPoolExecutor().map(obj.extract,
texts)`` sends the instance by value and the cached method by name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["CachedMethod", "takes_self"]


def takes_self(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` looks like a method: its first parameter is ``self`` or ``cls``."""
    parameters = list(inspect.signature(fn).parameters.values())
    return (
        bool(parameters)
        and parameters[0].name in ("self", "cls")
        and (parameters[0].kind is not inspect.Parameter.VAR_POSITIONAL)
    )


class CachedMethod(staticmethod):  # type: ignore[type-arg]
    """A cached function defined in a class body; binds like a method.

    It subclasses ``staticmethod`` only so that class builders which refuse
    unknown attributes in a class body (pydantic's ``BaseModel`` takes any
    other object there for a field without annotation) leave it alone, as
    they leave ``functools.lru_cache`` wrappers alone; its ``__get__`` binds
    the instance as a method does.
    """

    def __init__(self, wrapper: Callable[..., Any], *, binds_owner: bool = False) -> None:
        # staticmethod copies __name__, __doc__ and the like from what it is
        # given and makes that its (read-only) __wrapped__: the decorated
        # function, as for any other decorated function. The cache controls
        # come from the wrapper's __dict__.
        super().__init__(getattr(wrapper, "__wrapped__", wrapper))
        self.__dict__.update(
            {name: value for name, value in vars(wrapper).items() if name != "__wrapped__"}
        )
        self._wrapper = wrapper
        self._binds_owner = binds_owner
        self._owner: tuple[type, str] | None = None

    def __set_name__(self, owner: type, name: str) -> None:
        self._owner = (owner, name)

    def __reduce__(self) -> tuple[Any, ...]:
        if self._owner is None:
            raise TypeError(
                f"cannot pickle {self!r}: it was not defined in a class body, so it has no "
                "name to be found by"
            )
        return (_class_attribute, self._owner)

    @property
    def wrapper(self) -> Callable[..., Any]:
        """The cached function this descriptor binds (a plain, sync or async, function)."""
        return self._wrapper

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapper(*args, **kwargs)

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if self._binds_owner:  # a classmethod: bind the class, from the class or an instance
            return BoundCachedMethod(self._wrapper, owner if owner is not None else type(instance))
        if instance is None:
            return self
        return BoundCachedMethod(self._wrapper, instance)

    def __repr__(self) -> str:
        return f"<cached method {self._wrapper.__qualname__}>"


class BoundCachedMethod:
    """``instance.method``: the call and the cache controls with ``self`` supplied."""

    __slots__ = ("__self__", "_wrapper")

    def __init__(self, wrapper: Callable[..., Any], instance: object) -> None:
        self._wrapper = wrapper
        self.__self__ = instance

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapper(self.__self__, *args, **kwargs)

    def cache_key(self, *args: Any, **kwargs: Any) -> str:
        key: str = self._wrapper.cache_key(self.__self__, *args, **kwargs)  # type: ignore[attr-defined]
        return key

    def invalidate(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapper.invalidate(self.__self__, *args, **kwargs)  # type: ignore[attr-defined]

    def refresh(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapper.refresh(self.__self__, *args, **kwargs)  # type: ignore[attr-defined]

    def uncached(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapper.uncached(self.__self__, *args, **kwargs)  # type: ignore[attr-defined]

    def map(self, items: Any, **options: Any) -> Any:
        return self._wrapper.map(items, _instance=(self.__self__,), **options)  # type: ignore[attr-defined]

    def warm(self, items: Any, **options: Any) -> Any:
        return self._wrapper.warm(items, _instance=(self.__self__,), **options)  # type: ignore[attr-defined]

    def amap(self, items: Any, **options: Any) -> Any:
        return self._wrapper.amap(items, _instance=(self.__self__,), **options)  # type: ignore[attr-defined]

    def awarm(self, items: Any, **options: Any) -> Any:
        return self._wrapper.awarm(items, _instance=(self.__self__,), **options)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        if name == "_wrapper":  # not set yet (an object being unpickled): no endless lookup
            raise AttributeError(name)
        return getattr(self._wrapper, name)  # cache_info, cache_clear, __wrapped__, __name__...

    def __reduce__(self) -> tuple[Any, ...]:
        # Bound to a class (a cached classmethod), or to an instance of one.
        owner = self.__self__ if isinstance(self.__self__, type) else type(self.__self__)
        for klass in owner.__mro__:
            for name, attribute in vars(klass).items():
                # @classmethod above @instructor_cache: the class holds the classmethod.
                found = attribute.__func__ if isinstance(attribute, classmethod) else attribute
                if isinstance(found, CachedMethod) and found.wrapper is self._wrapper:
                    return (getattr, (self.__self__, name))
        raise TypeError(f"cannot pickle {self!r}: its method is not an attribute of {owner!r}")

    @property
    def __signature__(self) -> inspect.Signature:
        """The signature without ``self``, as a bound method shows it."""
        signature = inspect.signature(self._wrapper)
        return signature.replace(parameters=list(signature.parameters.values())[1:])

    def __repr__(self) -> str:
        return f"<bound cached method {self._wrapper.__qualname__} of {self.__self__!r}>"


def _class_attribute(owner: type, name: str) -> Any:
    """A class's own attribute, without ``__get__``: how a ``CachedMethod`` is unpickled."""
    return vars(owner)[name]

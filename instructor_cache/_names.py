"""Names that identify classes and scripts the same way in every process.

A key names a class by its import path, and a script's ``__main__`` (or a
spawned worker's ``__mp_main__``) by the module name an import of the script
would give it, so a cache warmed by ``python tool.py`` serves the tests that
``import tool``.
"""

from __future__ import annotations

import os
import pathlib
import sys
from typing import Any

__all__ = [
    "UNNAMED_BUILTINS",
    "is_library",
    "main_module_name",
    "resolves_to",
    "type_path",
]

_LIBRARY_TOPS = frozenset({"builtins", "pydantic", "pydantic_core", "typing_extensions"})


def type_path(cls: type) -> str:
    """The importable name of a class, which is stable where ``id()`` and ``hash()`` are not.

    A class of a script is named as an import of the script would name it, as
    its functions are (``main_module_name`` below).
    """
    module = cls.__module__
    if module in _MAIN_MODULES:
        module = main_module_name(module)
    return f"{module}.{cls.__qualname__}"


# A script run as ``python tool.py``, and its re-import in a spawned worker.
_MAIN_MODULES = frozenset({"__main__", "__mp_main__"})


def main_module_name(running_as: str = "__main__") -> str:
    """The name under which a script (``__main__``, or ``__mp_main__`` in a spawned
    worker, which imports it under that name) would be imported, where that can be told.

    ``python -m pkg.tool`` has a module spec naming it; ``python pkg/tool.py``
    has a file, named here as an import would name it (the package
    directories above it, while they hold an ``__init__.py``). A REPL or a
    notebook has neither and stays ``__main__``: there the code fingerprint
    tells its functions apart.
    """
    main = sys.modules.get(running_as)
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None):
        return str(spec.name)
    file = getattr(main, "__file__", None)
    if not isinstance(file, str) or not file.endswith(".py"):
        return "__main__"
    path = pathlib.Path(os.path.abspath(file))
    parts = [path.stem]
    directory = path.parent
    while (directory / "__init__.py").is_file() and directory.parent != directory:
        parts.insert(0, directory.name)
        directory = directory.parent
    return ".".join(parts)


# Builtin classes that no module exports by their name.
UNNAMED_BUILTINS = frozenset({type(None), type(Ellipsis), type(NotImplemented)})


def resolves_to(cls: type) -> bool:
    """Whether the class's module and qualified name lead back to that very class."""
    found: Any = sys.modules.get(cls.__module__)
    for part in cls.__qualname__.split("."):
        found = getattr(found, part, None)
        if found is None:
            return False
    return found is cls


def is_library(klass: type) -> bool:
    """Whether ``klass`` comes from Python, pydantic or an installed package, not user code."""
    top = klass.__module__.partition(".")[0]
    if top in _LIBRARY_TOPS or top in sys.stdlib_module_names:
        return True
    file = getattr(sys.modules.get(klass.__module__), "__file__", None) or ""
    return bool({"site-packages", "dist-packages"} & set(file.split(os.sep)))

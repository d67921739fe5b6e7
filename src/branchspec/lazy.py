"""Lazy re-exports for a package ``__init__``: a name is imported from its submodule on first use, so importing a
package's config does not import its trainer (PEP 562 module ``__getattr__`` / ``__dir__``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, home: dict[str, str],
                 namespace: dict[str, Any]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``home`` maps each public name to the submodule that defines
    it; ``namespace`` is the package's ``globals()``."""

    def getattr_(name: str) -> Any:
        if name in home:
            return getattr(importlib.import_module(f"{package}.{home[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def dir_() -> list[str]:
        return sorted(set(namespace) | set(home))

    return getattr_, dir_


__all__ = ["lazy_exports"]

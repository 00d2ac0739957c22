"""Lazy package exports: a name is imported from its module when first used.

Every subpackage ``__init__`` re-exports its public names this way, so that importing
one light module (``openamp.rpmsg.wire``, ``openamp.metal.deadline``) does not load its
siblings, and ``import openamp.remoteproc`` does not load pyelftools until an ELF is
touched.  A board command pays only for what it uses (docs/architecture.md).

Usage, in a package ``__init__``::

    _EXPORTS = {"RemoteProc": ".core", "ElfImage": ".elf"}
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
    __all__ = sorted(_EXPORTS)
    if TYPE_CHECKING:          # the same names, for type checkers and editors
        from .core import RemoteProc
        from .elf import ElfImage

``tests/test_layers.py`` checks that the ``TYPE_CHECKING`` block and the table agree.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """Module ``__getattr__`` and ``__dir__`` for ``package`` exporting ``exports``.

    ``exports`` maps a public name to the module (relative to ``package``, e.g.
    ``".core"``) that defines it.  A resolved name is cached in the package namespace,
    so the second access costs nothing.
    """
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> object:
        module = exports.get(name)
        if module is None:
            # ``package.submodule`` without importing it first, as with eager packages
            if not name.startswith("_"):
                try:
                    return importlib.import_module(f"{package}.{name}")
                except ModuleNotFoundError as exc:
                    if exc.name != f"{package}.{name}":
                        raise
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__

"""The one way resnet_gluon deprecates a name, a path or an argument: a ``DeprecationWarning`` that names the
replacement and the release that removes the old one (listed in CHANGELOG.md)."""
from __future__ import annotations

import warnings
from typing import Any

__all__ = ["REMOVED_IN", "deprecated", "renamed_argument"]

#: The release that removes what 0.2 deprecates.
REMOVED_IN = "0.3.0"


def deprecated(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn that ``old`` (a dotted path, an attribute or an argument) is deprecated in favour of ``new``.

    ``stacklevel`` 3 points at the caller of the function that calls this one.
    """
    warnings.warn(f"{old} is deprecated and will be removed in resnet_gluon {REMOVED_IN}; use {new}",
                  DeprecationWarning, stacklevel=stacklevel)


def renamed_argument(where: str, old: str, old_value: Any, new: str, new_value: Any, *, stacklevel: int = 4) -> Any:
    """The value of argument ``new`` of ``where`` (a function or class name), taking that of its deprecated name
    ``old`` (with a warning) when ``old_value`` is not None; None stands for "not given" for both.

    Raises
    ------
    TypeError
        When both names are given different values.
    """
    if old_value is None:
        return new_value
    deprecated(f"{where}({old}=...)", f"{new}=... (the same values)", stacklevel=stacklevel)
    if new_value is not None and new_value != old_value:
        raise TypeError(f"{where} got {new}={new_value!r} and {old}={old_value!r}; pass {new} only")
    return old_value

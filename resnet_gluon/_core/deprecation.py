"""The one way resnet_gluon deprecates a name, a path or an argument: a ``DeprecationWarning`` that names the
replacement and the release that removes the old one (listed in CHANGELOG.md)."""
from __future__ import annotations

import warnings

__all__ = ["REMOVED_IN", "deprecated"]

#: The release that removes what 0.2 deprecates.
REMOVED_IN = "0.3.0"


def deprecated(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn that ``old`` (a dotted path, an attribute or an argument) is deprecated in favour of ``new``.

    ``stacklevel`` 3 points at the caller of the function that calls this one.
    """
    warnings.warn(f"{old} is deprecated and will be removed in resnet_gluon {REMOVED_IN}; use {new}",
                  DeprecationWarning, stacklevel=stacklevel)

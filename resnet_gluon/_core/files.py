"""Atomic file writes: every file the library writes goes through :func:`atomic_path`.

A file is written under a temporary name in the same folder and renamed over the final name
(``os.replace``, atomic on POSIX), so a reader or a killed run never sees a truncated file, and a failed
write leaves the previous file untouched and no temporary file behind.
"""
from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Iterator, Sequence, Union

__all__ = ["atomic_path", "atomic_write_text", "atomic_write_json", "temporary_name", "printable", "short_list",
           "PathLike"]

#: A file name: ``str`` or any ``os.PathLike`` (``pathlib.Path``); the one definition in the package.
PathLike = Union[str, os.PathLike]


def temporary_name(path: PathLike) -> str:
    """The temporary name :func:`atomic_path` writes ``path`` under (``<path>.tmp<pid>``, same folder and suffix
    kept last, so tools that look at the extension still work)."""
    path = os.fspath(path)
    root, ext = os.path.splitext(path)
    return f"{root}.tmp{os.getpid()}{ext}"


@contextlib.contextmanager
def atomic_path(path: PathLike, *, make_folder: bool = True) -> Iterator[str]:
    """Yield a temporary path to write ``path``'s content to; on success it is renamed to ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = os.fspath(path)
    if make_folder:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (flushed to disk before the rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=1))


def printable(path: PathLike, *, quote: bool = True) -> str:
    """``path`` for a one-line message, in quotes unless ``quote=False``: bytes that are not UTF-8 shown as
    ``\\xNN`` (Python keeps them as surrogates in ``str`` names), tabs, line breaks and other unprintable
    characters escaped (``\\t``, ``\\n``).

    Example: the file ``caf\\xe9.jpg`` of an old Latin-1 archive is shown as ``'caf\\xe9.jpg'``.
    """
    text = os.fsencode(path).decode("utf-8", "backslashreplace") if isinstance(path, (str, bytes, os.PathLike)) \
        else str(path)
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return f"'{text}'" if quote else text


def short_list(names: Sequence[str], limit: int = 6) -> str:
    """``names`` for a one-line message: the first ``limit`` quoted, then how many in all, e.g.
    ``"['a', 'b', ...] (12)"``."""
    shown = ", ".join(repr(n) for n in list(names)[:limit])
    return f"[{shown}{', ...' if len(names) > limit else ''}] ({len(names)})"

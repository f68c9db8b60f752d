"""The public API as text: every name in the ``__all__`` of resnet_gluon and of its public modules, with its
signature (classes: the constructor and public methods and properties). ``tests/test_package.py`` compares it with
``tests/data/api_snapshot.txt``, so that a change to the public API is a decision, never an accident.

After a deliberate change (and its CHANGELOG entry): ``python tests/api_snapshot.py --update``.
"""
from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import sys
from typing import List

SNAPSHOT = os.path.join(os.path.dirname(__file__), "data", "api_snapshot.txt")


def public_modules() -> List[str]:
    """resnet_gluon, its modules whose dotted path has no part starting with '_', and the modules it re-exports."""
    import resnet_gluon

    names = ["resnet_gluon"]
    for info in pkgutil.walk_packages(resnet_gluon.__path__, "resnet_gluon."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    # modules the top level re-exports by a short name (``resnet_gluon.amp``) are public wherever they live
    names += [getattr(resnet_gluon, n).__name__ for n in resnet_gluon.__all__
              if inspect.ismodule(getattr(resnet_gluon, n))]
    return sorted(set(names))


def _signature(obj) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"


def _describe(name: str, obj) -> List[str]:
    if inspect.isclass(obj):
        lines = [f"class {name}{_signature(obj)}"]
        for attr, value in sorted(vars(obj).items()):
            if attr.startswith("_"):
                continue
            if isinstance(value, property):
                lines.append(f"    {attr}: property")
            elif isinstance(value, (staticmethod, classmethod)):
                lines.append(f"    {attr}{_signature(value.__func__)}  [{type(value).__name__}]")
            elif inspect.isfunction(value):
                lines.append(f"    {attr}{_signature(value)}")
        return lines
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return [f"def {name}{_signature(obj)}"]
    if inspect.ismodule(obj):
        return [f"module {name} = {obj.__name__}"]
    return [f"{name}: {type(obj).__name__} = {obj!r}" if isinstance(obj, (str, int, float, tuple, frozenset))
            else f"{name}: {type(obj).__name__}"]


def surface() -> str:
    """The snapshot text of the installed resnet_gluon."""
    out = []
    for module_name in public_modules():
        module = importlib.import_module(module_name)
        names = getattr(module, "__all__", None)
        if names is None:
            continue
        out.append(f"[{module_name}]")
        for name in sorted(names):
            out.extend(_describe(name, getattr(module, name)))
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    text = surface()
    if "--update" in sys.argv:
        with open(SNAPSHOT, "w") as f:
            f.write(text)
        print(f"wrote {SNAPSHOT}")
    else:
        print(text)

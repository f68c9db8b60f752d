"""The import paths of resnet_gluon 0.1 (one flat folder of modules), kept working for one minor release.

``import resnet_gluon.training``, ``from resnet_gluon.inference import onnx_logits``, ``resnet_gluon.data.
Preprocessing``: each old path still gives the same object and a ``DeprecationWarning`` naming the new path.
They go in 0.3.0 (``_core.deprecation.REMOVED_IN``). :data:`OLD_MODULES` maps each old module to its new home; :data:`MOVED_NAMES` the names an old
module re-exported from elsewhere. Nothing here is public API.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types

from ._core.deprecation import deprecated

_PKG = __name__.rpartition(".")[0]

# Old module -> its new home (issue #25's layout).
OLD_MODULES = {
    '_cuda_libs': '_core.cuda_libs',
    'amp': '_core.amp',
    'dist': '_core.dist',
    'files': '_core.files',
    'runtime': '_core.runtime',
    'blocks': 'models.blocks',
    'models': 'models.registry',
    'weights': 'models.weights',
    '_weight_files': 'models._weight_files',
    '_weight_names': 'models._weight_names',
    'transfer': 'models.transfer',
    'checkpoint': 'models.checkpoint',
    'data': 'data.recordio',
    'images': 'data.images',
    'image_folders': 'data.folders',
    'fashion_mnist': 'data.fashion_mnist',
    'preprocessing': 'data.preprocessing',
    'sharding': 'data.sharding',
    'pipelines': 'data.pipelines',
    'recipe': 'train.recipe',
    'optimizers': 'train.optimizers',
    'trainer': 'train.trainer',
    'training': 'train.fit',
    'callbacks': 'train.callbacks',
    'stopping': 'train.stopping',
    'inference': 'deploy.predictor',
    'quantization': 'deploy.quantization',
    'export': 'deploy.export',
    'openvino_backend': 'deploy.openvino',
}

# Names an old module re-exported from elsewhere: old module -> {name: the name's home}.
MOVED_NAMES = {
    'models': {'load_parameters': 'models.weights', 'save_parameters': 'models.weights', 'save_gluoncv_parameters': 'models.weights'},
    'data': {'Preprocessing': 'data.preprocessing', 'IMAGENET_MEAN': 'data.preprocessing', 'IMAGENET_STD': 'data.preprocessing',
             'images_to_recordio': 'data.folders', 'split_images_to_recordio': 'data.folders',
             'fashion_mnist_to_recordio': 'data.fashion_mnist'},
    'pipelines': {'epoch_order': 'data.sharding', 'shard_positions': 'data.sharding'},
    'trainer': {'reference_lr': 'train.recipe', 'Recipe': 'train.recipe'},
    'training': {'evaluate': 'evaluation', 'default_context': '_core.runtime'},
    'callbacks': {'rank_zero_only': '_core.dist'},
    'inference': {'load_image': 'data.preprocessing', 'preprocess': 'data.preprocessing', 'calibration_batches': 'deploy.quantization', 'quantize': 'deploy.quantization', 'export_onnx': 'deploy.export', 'onnx_logits': 'deploy.export'},
}

# Modules the top level re-exports by a short name (``from resnet_gluon import amp``); their 0.1 path
# ``import resnet_gluon.amp`` gives the same module, without a warning.
SHORT_MODULES = {"amp": "_core.amp", "dist": "_core.dist", "runtime": "_core.runtime", "pipelines": "data.pipelines"}

# Old modules whose name is now a subpackage: their old names are read through the subpackage's __getattr__.
_SUBPACKAGE_NAMES = ("data", "models")


def _home(old: str, name: str) -> str:
    return f"{_PKG}.{MOVED_NAMES.get(old, {}).get(name, OLD_MODULES[old])}"


def old_attribute(old: str, name: str, *, stacklevel: int = 3):
    """``resnet_gluon.<old>.<name>`` as in 0.1, with a warning naming the new path; AttributeError if it never was."""
    target = importlib.import_module(_home(old, name))
    if not hasattr(target, name):
        raise AttributeError(f"module '{_PKG}.{old}' has no attribute {name!r}")
    deprecated(f"{_PKG}.{old}.{name}", f"{target.__name__}.{name}", stacklevel=stacklevel + 1)
    return getattr(target, name)


class _OldModule(types.ModuleType):
    """What ``import resnet_gluon.<old>`` gives: the new module's names, read through (no copies)."""

    def __init__(self, old: str):
        super().__init__(f"{_PKG}.{old}")
        self.__dict__["_old"] = old
        self.__dict__["_target"] = importlib.import_module(f"{_PKG}.{OLD_MODULES[old]}")

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        old = self.__dict__["_old"]
        if name in MOVED_NAMES.get(old, {}):
            return old_attribute(old, name)
        return getattr(self.__dict__["_target"], name)

    def __dir__(self):
        return sorted(set(dir(self.__dict__["_target"])) | set(MOVED_NAMES.get(self.__dict__["_old"], {})))


class _OldPathFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``resnet_gluon.<old>`` for the old flat modules and warns where it is imported."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, old = fullname.rpartition(".")
        if package == _PKG and old in OLD_MODULES and old not in _SUBPACKAGE_NAMES:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        old = spec.name.rpartition(".")[2]
        if old in SHORT_MODULES:
            return importlib.import_module(f"{_PKG}.{SHORT_MODULES[old]}")
        deprecated(f"module {spec.name}", f"{_PKG}.{OLD_MODULES[old]}", stacklevel=3)  # warnings skips importlib's frames
        return _OldModule(old)

    def exec_module(self, module):
        pass


def install() -> None:
    """Put the old-path finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _OldPathFinder) for f in sys.meta_path):
        sys.meta_path.append(_OldPathFinder())


def package_getattr(package: str, name: str):
    """``__getattr__`` of the subpackages ``data`` and ``models``: the names their 0.1 modules had."""
    old = package.rpartition(".")[2]
    if name in MOVED_NAMES.get(old, {}) or _old_public(old, name):
        value = old_attribute(old, name, stacklevel=4)
        setattr(sys.modules[package], name, value)  # one warning: ``from`` imports read a name twice
        return value
    raise AttributeError(f"module {package!r} has no attribute {name!r}")


def _old_public(old: str, name: str) -> bool:
    target = importlib.import_module(f"{_PKG}.{OLD_MODULES[old]}")
    return name in getattr(target, "__all__", ())

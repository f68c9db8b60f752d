"""ResNet v1.5 for Apache MXNet Gluon, modelled on NVIDIA's ResNet-50 v1.5 recipe for MXNet.

The package, by layer (imports go downwards only; checked by ``lint-imports``, see ``.importlinter``):

- ``cli``, ``demo``, ``benchmark``: front ends.
- ``train`` (recipe, Trainer, fit, callbacks, stopping) and ``deploy`` (Predictor, quantization, export, OpenVINO):
  independent of each other.
- ``evaluation``: evaluate a network or a checkpoint, metrics.
- ``models`` (blocks, registry, weight files, transfer, checkpoints) and ``data`` (RecordIO, images, folders,
  the embedded data set, preprocessing, sharding, pipelines): independent of each other.
- ``_core``: runtime settings, Horovod, mixed precision, files, CUDA libraries.

``import resnet_gluon`` and the models need only mxnet. The names below are its user-facing API; ``fit``,
``Trainer``, the callbacks, ``evaluate``, ``Predictor`` and ``EMA`` are loaded on first access. Of these only
``fit``'s and the ``Trainer``'s modules import Horovod (and DALI, which must be loaded before it; see
:func:`resnet_gluon._core.dist.import_horovod`) when loaded; Horovod is initialised on first use, and a DALI
pipeline imports DALI when it is built. The 0.1 import paths
(``resnet_gluon.training``, ``resnet_gluon.inference``, ...) still work with a ``DeprecationWarning`` until 0.3.0
(:mod:`resnet_gluon._compat`).
"""
import importlib

from ._core import runtime as _runtime

# All three must happen before mxnet is imported (below): MXNet reads its threading variables at import, a CUDA
# build of mxnet looks for its CUDA libraries when it is loaded, and oneDNN's AMX kernels need the permission and
# the ISA variable before oneDNN first runs.
_runtime.apply_cpu_thread_defaults()
_runtime.preload_cuda_libraries()
_runtime.enable_amx()

from .models.blocks import BasicBlock, Bottleneck, ResNet, Stage, Stem  # noqa: E402

_runtime._settle_onednn_isa()  # pylint: disable=protected-access
from . import _compat  # noqa: E402
from .data.preprocessing import Preprocessing  # noqa: E402
from .models.checkpoint import export_checkpoint  # noqa: E402
from .models.registry import (  # noqa: E402
    count_parameters,
    get_model,
    list_models,
    register_model,
    resnet18_v1_5,
    resnet34_v1_5,
    resnet50_v1_5,
    resnet101_v1_5,
    resnet152_v1_5,
)
from .models.transfer import freeze_features, load_pretrained, set_features_lr_mult  # noqa: E402
from .models.weights import load_parameters, save_parameters  # noqa: E402
from .train.recipe import Recipe  # noqa: E402

__version__ = "0.2.0"

# User-facing names loaded on first access, which keeps `import resnet_gluon` light: train.fit and train.trainer
# import Horovod (and DALI before it) when loaded; tests/test_package.py checks that the others import neither.
_LAZY = {
    "fit": "train.fit", "History": "train.fit", "FitState": "train.fit",
    "Trainer": "train.trainer",
    "Callback": "train.callbacks", "Checkpoint": "train.callbacks", "ProgressBar": "train.callbacks",
    "Report": "train.callbacks", "TensorBoard": "train.callbacks",
    "evaluate": "evaluation",
    "Predictor": "deploy.predictor",
    "EMA": "train.ema",
}
# User-facing modules, by their short names: ``from resnet_gluon import amp, pipelines``.
_MODULES = _compat.SHORT_MODULES
_SUBPACKAGES = ("models", "data", "train", "deploy", "evaluation", "benchmark", "demo", "cli")

__all__ = [
    "BasicBlock", "Bottleneck", "ResNet", "Stage", "Stem", "Preprocessing", "Recipe",
    "count_parameters", "export_checkpoint", "get_model", "list_models", "load_parameters", "register_model",
    "save_parameters", "load_pretrained", "freeze_features", "set_features_lr_mult",
    "resnet18_v1_5", "resnet34_v1_5", "resnet50_v1_5", "resnet101_v1_5", "resnet152_v1_5",
    *_LAZY, *_MODULES,
]

_compat.install()


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        globals().update({n: getattr(module, n) for n, m in _LAZY.items() if m == _LAZY[name]})
        return globals()[name]
    if name in _MODULES:
        return importlib.import_module(f".{_MODULES[name]}", __name__)
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    if name in _compat.OLD_MODULES:
        return importlib.import_module(f".{name}", __name__)  # the 0.1 module path: warns
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(__all__) | set(_SUBPACKAGES) | {"__version__"})

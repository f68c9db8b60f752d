"""ResNet v1.5 for Apache MXNet Gluon, modelled on NVIDIA's ResNet-50 v1.5 recipe for MXNet.

``import resnet_gluon`` and the models need only mxnet. ``fit``, ``Trainer`` and the callbacks (modules
``training``, ``trainer``, ``callbacks``) import Horovod, and the DALI pipelines import DALI; they are loaded on
first access, as are ``evaluate`` and ``Predictor`` (modules ``evaluation`` and ``inference``, which need
neither) and every submodule (``resnet_gluon.amp``, ``resnet_gluon.pipelines``, ...).
"""
import importlib

from . import runtime as _runtime

# All three must happen before mxnet is imported (below): MXNet reads its threading variables at import, a CUDA
# build of mxnet looks for its CUDA libraries when it is loaded, and oneDNN's AMX kernels need the permission and
# the ISA variable before oneDNN first runs.
_runtime.apply_cpu_thread_defaults()
_runtime.preload_cuda_libraries()
_runtime.enable_amx()

from .blocks import BasicBlock, Bottleneck, ResNet, Stage, Stem  # noqa: E402

_runtime._settle_onednn_isa()  # pylint: disable=protected-access
from .preprocessing import Preprocessing  # noqa: E402
from .recipe import Recipe  # noqa: E402
from .checkpoint import export_checkpoint  # noqa: E402
from .models import (  # noqa: E402
    count_parameters,
    get_model,
    list_models,
    load_parameters,
    register_model,
    resnet18_v1_5,
    resnet34_v1_5,
    resnet50_v1_5,
    resnet101_v1_5,
    resnet152_v1_5,
)
from .transfer import freeze_features, load_pretrained, set_features_lr_mult  # noqa: E402
from .weights import save_parameters  # noqa: E402

__version__ = "0.1.0"

# Public names whose modules import Horovod (or DALI, OpenCV) — loaded on first access.
_LAZY = {
    "fit": "training", "History": "training", "FitState": "training", "evaluate": "evaluation",
    "Trainer": "trainer",
    "Callback": "callbacks", "Checkpoint": "callbacks", "ProgressBar": "callbacks", "Report": "callbacks",
    "TensorBoard": "callbacks",
    "Predictor": "inference", "EMA": "ema",
}

_SUBMODULES = ("amp", "benchmark", "blocks", "callbacks", "checkpoint", "data", "dist", "ema", "evaluation", "export",
               "fashion_mnist", "files", "image_folders", "images", "inference", "models", "pipelines",
               "preprocessing", "quantization", "recipe", "runtime", "sharding", "trainer", "training", "transfer", "weights")

__all__ = [
    "BasicBlock", "Bottleneck", "ResNet", "Stage", "Stem", "Preprocessing", "Recipe",
    "count_parameters", "export_checkpoint", "get_model", "list_models", "load_parameters", "register_model",
    "save_parameters", "load_pretrained", "freeze_features", "set_features_lr_mult",
    "resnet18_v1_5", "resnet34_v1_5", "resnet50_v1_5", "resnet101_v1_5", "resnet152_v1_5",
    *_LAZY,
]


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        globals().update({n: getattr(module, n) for n, m in _LAZY.items() if m == _LAZY[name]})
        return globals()[name]
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

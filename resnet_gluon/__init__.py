"""ResNet v1.5 for Apache MXNet Gluon, modelled on NVIDIA's ResNet-50 v1.5 recipe for MXNet.

``import resnet_gluon`` needs only mxnet; Horovod and DALI are imported where they are used.
"""
from .runtime import apply_cpu_thread_defaults as _apply_cpu_thread_defaults

_apply_cpu_thread_defaults()

from .blocks import BasicBlock, Bottleneck, ResNet, Stage, Stem  # noqa: E402
from .models import (  # noqa: E402
    count_parameters,
    export_checkpoint,
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

__version__ = "0.1.0"
__all__ = [
    "BasicBlock", "Bottleneck", "ResNet", "Stage", "Stem",
    "count_parameters", "export_checkpoint", "get_model", "list_models", "load_parameters", "register_model",
    "resnet18_v1_5", "resnet34_v1_5", "resnet50_v1_5", "resnet101_v1_5", "resnet152_v1_5",
]

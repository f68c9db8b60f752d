"""The registry of ResNet v1.5 variants, and loading and exporting their weights.

A variant is a registered function whose name is its registry key::

    net = get_model("resnet50_v1_5", classes=10)
    net.initialize()

Weight I/O lives in :mod:`resnet_gluon.models.weights`: :func:`~resnet_gluon.models.weights.load_parameters`
reads Gluon's ``save_parameters`` files of these networks, gluoncv's ``resnet*_v1b`` parameter files, the
``<prefix>-NNNN.params`` of the reference's checkpoint pair (:func:`resnet_gluon.models.checkpoint.export_checkpoint`),
and torchvision's/timm's and Hugging Face transformers' state dicts (safetensors, or ``.pth`` with torch);
:func:`~resnet_gluon.models.weights.save_parameters` writes Gluon, gluoncv and torchvision files.
"""
from __future__ import annotations

import functools
from typing import Callable, Dict, List

import numpy as np
from mxnet import gluon

from .blocks import BasicBlock, Bottleneck, ResNet
from .weights import load_parameters, save_gluoncv_parameters, save_parameters

__all__ = ["register_model", "get_model", "list_models", "count_parameters", "resnet18_v1_5", "resnet34_v1_5", "resnet50_v1_5", "resnet101_v1_5",
           "resnet152_v1_5"]

_REGISTRY: Dict[str, Callable[..., ResNet]] = {}


def register_model(fn: Callable[..., ResNet]) -> Callable[..., ResNet]:
    """Register a model constructor under its function name (a decorator); the net it builds records that
    name as ``net.model_name`` (checkpoints and reports use it).

    Raises
    ------
    ValueError
        When a model of that name is registered already.
    """
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"a model named {name!r} is already registered")

    @functools.wraps(fn)
    def build(**kwargs) -> ResNet:
        net = fn(**kwargs)
        net.model_name = name
        return net

    _REGISTRY[name] = build
    return build


def list_models() -> List[str]:
    """Names of the registered models, sorted."""
    return sorted(_REGISTRY)


def get_model(name: str, **kwargs) -> ResNet:
    """Build a registered model by name; ``kwargs`` go to :class:`~resnet_gluon.models.blocks.ResNet`.

    Raises
    ------
    ValueError
        For an unknown name; the message lists the valid ones.

    Examples
    --------
    >>> import mxnet as mx
    >>> from resnet_gluon import get_model, list_models
    >>> list_models()
    ['resnet101_v1_5', 'resnet152_v1_5', 'resnet18_v1_5', 'resnet34_v1_5', 'resnet50_v1_5']
    >>> net = get_model("resnet50_v1_5", classes=10)
    >>> net.initialize()
    >>> net(mx.nd.zeros((2, 3, 32, 32))).shape  # (N, 3, H, W) float32 images -> (N, classes) logits
    (2, 10)
    >>> net.model_name, count_parameters(net)
    ('resnet50_v1_5', 23528522)
    >>> get_model("resnet50")
    Traceback (most recent call last):
    ...
    ValueError: unknown model 'resnet50'; valid names: resnet101_v1_5, resnet152_v1_5, resnet18_v1_5, ...
    """
    try:
        fn = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(list_models())}") from None
    return fn(**kwargs)


@register_model
def resnet18_v1_5(**kwargs) -> ResNet:
    """ResNet-18 (He et al., 2016, arXiv:1512.03385); BasicBlocks, so identical to v1."""
    return ResNet(BasicBlock, (2, 2, 2, 2), **kwargs)


@register_model
def resnet34_v1_5(**kwargs) -> ResNet:
    """ResNet-34 (He et al., 2016, arXiv:1512.03385); BasicBlocks, so identical to v1."""
    return ResNet(BasicBlock, (3, 4, 6, 3), **kwargs)


@register_model
def resnet50_v1_5(**kwargs) -> ResNet:
    """ResNet-50 v1.5 (He et al., 2016; NVIDIA DeepLearningExamples, stride on the 3x3 conv)."""
    return ResNet(Bottleneck, (3, 4, 6, 3), **kwargs)


@register_model
def resnet101_v1_5(**kwargs) -> ResNet:
    """ResNet-101 v1.5 (He et al., 2016; NVIDIA DeepLearningExamples, stride on the 3x3 conv)."""
    return ResNet(Bottleneck, (3, 4, 23, 3), **kwargs)


@register_model
def resnet152_v1_5(**kwargs) -> ResNet:
    """ResNet-152 v1.5 (He et al., 2016; NVIDIA DeepLearningExamples, stride on the 3x3 conv)."""
    return ResNet(Bottleneck, (3, 8, 36, 3), **kwargs)


def count_parameters(net: gluon.Block) -> int:
    """Number of trainable parameter values (BatchNorm running statistics excluded, as in published counts)."""
    return sum(int(np.prod(p.shape)) for p in net.collect_params().values() if p.grad_req != "null")

"""The registry of ResNet v1.5 variants, and loading and exporting their weights.

A variant is a registered function whose name is its registry key::

    net = get_model("resnet50_v1_5", classes=10)
    net.initialize()

Weights load from three kinds of file (:func:`load_parameters` tells them apart): Gluon's
``save_parameters`` files of these networks, gluoncv's ``resnet*_v1b`` parameter files (the same
architecture with other names), and the reference's checkpoint pair ``<prefix>-symbol.json`` +
``<prefix>-NNNN.params`` written by :func:`export_checkpoint`.
"""
from __future__ import annotations

import functools
import os
import re
from typing import Callable, Dict, List, Optional, Union

import mxnet as mx
import numpy as np
from mxnet import gluon

from .blocks import BasicBlock, Bottleneck, ResNet

__all__ = ["register_model", "get_model", "list_models", "load_parameters", "export_checkpoint",
           "checkpoint_files", "count_parameters", "save_gluoncv_parameters", "resnet18_v1_5", "resnet34_v1_5", "resnet50_v1_5",
           "resnet101_v1_5", "resnet152_v1_5"]

_REGISTRY: Dict[str, Callable[..., ResNet]] = {}


def register_model(fn: Callable[..., ResNet]) -> Callable[..., ResNet]:
    """Register a model constructor under its function name (a decorator); the net it builds records that
    name as ``net.model_name`` (checkpoints and reports use it)."""
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
    """Build a registered model by name; ``kwargs`` go to :class:`~resnet_gluon.blocks.ResNet`.

    Raises
    ------
    ValueError
        For an unknown name; the message lists the valid ones.
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


# gluoncv ResNetV1b names -> this package's structural names.
_GLUONCV_V1B = [
    (re.compile(r"^conv1\."), "features.0.conv."),
    (re.compile(r"^bn1\."), "features.0.bn."),
    (re.compile(r"^layer(\d)\."), lambda m: f"features.{m.group(1)}."),
    (re.compile(r"^fc\."), "output."),
]


def _from_gluoncv(name: str) -> str:
    for pattern, repl in _GLUONCV_V1B:
        if pattern.match(name):
            return pattern.sub(repl, name, count=1)
    return name


def _to_gluoncv(name: str) -> str:
    name = re.sub(r"^features\.0\.conv\.", "conv1.", name)
    name = re.sub(r"^features\.0\.bn\.", "bn1.", name)
    name = re.sub(r"^features\.(\d)\.", lambda m: f"layer{m.group(1)}.", name)
    return re.sub(r"^output\.", "fc.", name)


def _structural_params(net: gluon.Block) -> Dict[str, gluon.Parameter]:
    # The names Gluon's own save_parameters uses ("features.1.0.conv1.weight").
    return net._collect_params_with_prefix()  # pylint: disable=protected-access


def _exported_to_structural(net: gluon.Block, loaded: Dict[str, mx.nd.NDArray]) -> Dict[str, mx.nd.NDArray]:
    """Map the names of an exported (symbol-style) params file onto ``net``'s structural names."""
    stripped = {k.split(":", 1)[1]: v for k, v in loaded.items()}
    by_name = {p.name: key for key, p in _structural_params(net).items()}
    file_root = os.path.commonprefix(list(stripped))
    net_root = os.path.commonprefix(list(by_name))
    mapped = {}
    for name, value in stripped.items():
        own = net_root + name[len(file_root):]
        mapped[by_name.get(own, "<symbol>" + name)] = value
    return mapped


def load_parameters(net: gluon.Block, filename: Union[str, os.PathLike], *, ctx=None,
                    allow_missing: bool = False, ignore_extra: bool = False) -> gluon.Block:
    """Load weights into ``net`` from a ``.params`` file, checking every name and shape.

    Parameters
    ----------
    net : ResNet
        The network to fill; it need not be initialised.
    filename : str or PathLike
        A Gluon ``save_parameters`` file of this network, a gluoncv ``resnet*_v1b`` parameter file, or the
        ``<prefix>-NNNN.params`` of an exported checkpoint.
    ctx : Context or list of Context, optional
        Where to put the weights; default the current context.
    allow_missing, ignore_extra : bool
        Tolerate parameters that the file lacks / that the network lacks.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        Naming the first missing, unexpected or wrong-shape parameter.
    """
    filename = os.fspath(filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(f"no parameter file {filename!r}")
    loaded = mx.nd.load(filename)
    if not isinstance(loaded, dict) or not loaded:
        raise ValueError(f"{filename!r} holds no named parameters; is it a Gluon/MXNet .params file?")
    if all(k.startswith(("arg:", "aux:")) for k in loaded):
        loaded = _exported_to_structural(net, loaded)
    elif any(k.startswith(("layer1.", "fc.")) for k in loaded):
        loaded = {_from_gluoncv(k): v for k, v in loaded.items()}
    params = _structural_params(net)
    for name, param in params.items():
        if name not in loaded:
            if allow_missing:
                continue
            raise ValueError(f"{filename!r} lacks parameter {name!r} (shape {param.shape}) of the network; "
                             "is it a checkpoint of another model? (allow_missing=True to skip it)")
        if param.shape and 0 not in param.shape and tuple(loaded[name].shape) != tuple(param.shape):
            raise ValueError(f"parameter {name!r} has shape {tuple(loaded[name].shape)} in {filename!r} but "
                             f"{param.shape} in the network (another class count or depth?)")
    extra = sorted(set(loaded) - set(params))
    if extra and not ignore_extra:
        raise ValueError(f"{filename!r} has parameter {extra[0]!r} that the network lacks "
                         f"({len(extra)} in all; ignore_extra=True to skip them)")
    ctx = ctx if ctx is not None else mx.context.current_context()
    for name, param in params.items():
        if name in loaded:
            param._load_init(loaded[name], ctx)  # pylint: disable=protected-access
    return net


def save_gluoncv_parameters(net: ResNet, filename: Union[str, os.PathLike]) -> None:
    """Save ``net``'s weights under gluoncv's ``resnet*_v1b`` names (loadable by gluoncv's ``load_parameters``)."""
    arrays = {_to_gluoncv(name): p._reduce() for name, p in _structural_params(net).items()}  # pylint: disable=protected-access
    mx.nd.save(os.fspath(filename), arrays)


def checkpoint_files(prefix: Union[str, os.PathLike], epoch: int) -> tuple:
    """The reference's checkpoint file names: ``(<prefix>-symbol.json, <prefix>-<epoch:04d>.params)``."""
    prefix = os.fspath(prefix)
    return f"{prefix}-symbol.json", f"{prefix}-{epoch:04d}.params"


def export_checkpoint(net: gluon.HybridBlock, prefix: Union[str, os.PathLike], epoch: int = 0, *,
                      input_shape: Optional[tuple] = None) -> tuple:
    """Write ``net`` as ``<prefix>-symbol.json`` + ``<prefix>-<epoch:04d>.params`` (the reference's format).

    The files load back with ``gluon.SymbolBlock.imports(symbol, ['data'], params)`` and with
    :func:`load_parameters`. Each file is written to a temporary name and renamed, so an interrupted export
    never leaves a truncated file under the final name.

    Parameters
    ----------
    net : HybridBlock
        An initialised network. If it has not run forward since it was hybridized, ``input_shape`` is required.
    prefix : str or PathLike
        Path prefix of the files.
    epoch : int
        Epoch number in the params file name.
    input_shape : tuple, optional
        Shape of a dummy float32 batch, e.g. ``(1, 3, 224, 224)`` (NCHW), to run one forward pass first.

    Returns
    -------
    tuple of str
        The symbol file and the params file.
    """
    if not getattr(net, "_active", False):  # hybridize() again would drop the cached graph
        net.hybridize()
    if input_shape is not None:
        ctx = next(iter(net.collect_params().values())).list_ctx()[0]
        net(mx.nd.zeros(input_shape, ctx=ctx))
    symbol_file, params_file = checkpoint_files(prefix, epoch)
    tmp_prefix = f"{os.fspath(prefix)}.tmp{os.getpid()}"
    try:
        net.export(tmp_prefix, epoch)
    except RuntimeError as err:
        raise RuntimeError(f"cannot export: {err}; run one forward pass after hybridize() or pass "
                           "input_shape=") from err
    tmp_symbol, tmp_params = checkpoint_files(tmp_prefix, epoch)
    os.replace(tmp_params, params_file)
    os.replace(tmp_symbol, symbol_file)
    return symbol_file, params_file

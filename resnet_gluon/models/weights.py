"""Reading and writing the weights of the ResNet v1.5 networks, in the formats the world publishes them in.

:func:`load_parameters` reads, telling the kind of file by parsing its structure (never by its name or by one
leading byte; see :mod:`resnet_gluon.models._weight_files`):

- MXNet ``.params`` files: Gluon's ``save_parameters`` of these networks (structural names such as
  ``features.1.0.conv1.weight``), gluoncv's ``resnet*_v1b`` files (``layer1.0.conv1.weight``, ``bn1.gamma``),
  and the reference's exported checkpoints ``<prefix>-NNNN.params`` (``arg:``/``aux:`` names);
- safetensors files, through the ``safetensors`` package's NumPy API (no torch needed);
- PyTorch ``.pth``/``.pt`` state dicts, when torch is importable.

torchvision's, timm's and Hugging Face transformers' (``microsoft/resnet-*``, default configuration) ResNets
are the same v1.5 architecture (stride on the 3x3 convolution) under other names, mapped for every depth by
:mod:`resnet_gluon.models._weight_names`: torchvision/timm ``conv1.weight``, ``bn1.{weight,bias,running_mean,
running_var}``, ``layerL.B.convK.weight``, ``layerL.B.downsample.{0,1}.*``, ``fc.*``; transformers
``resnet.embedder.embedder.{convolution,normalization}.*``, ``resnet.encoder.stages.S.layers.L.layer.K.*``,
``...layers.L.shortcut.*``, ``classifier.1.*``. BatchNorm's ``weight``/``bias`` are Gluon's ``gamma``/``beta``,
convolution weights are OIHW in both (``layout='NCHW'``), ``num_batches_tracked`` has no Gluon counterpart and
is ignored. Their preprocessing (RGB, ImageNet mean/std, 224 px crops of 256 px resizes) is
:class:`~resnet_gluon.data.preprocessing.Preprocessing`'s default.

:func:`save_parameters` writes Gluon, gluoncv or torchvision (safetensors) files. The torchvision files hold
exactly the keys, shapes and dtypes of torchvision's ``resnet*`` state dicts (which timm's ``resnet*`` share),
for ``torchvision.models.resnet50(num_classes=...).load_state_dict(safetensors.torch.load_file(path))``; the
tests check them against torchvision's structure and published counts (torch is not installed here).
"""
from __future__ import annotations

import os
from typing import Dict

import mxnet as mx
import numpy as np
from mxnet import gluon

from ._weight_files import safetensors_numpy
from ._weight_loading import assign_named, check_named, read_named, structural_params
from ._weight_names import to_gluoncv, to_torch
from .._core.files import PathLike, atomic_path

__all__ = ["load_parameters", "save_parameters", "save_gluoncv_parameters", "FORMATS"]

FORMATS = ("gluon", "gluoncv", "torchvision")



def load_parameters(net: gluon.Block, filename: PathLike, *, ctx=None, allow_missing: bool = False,
                    ignore_extra: bool = False) -> gluon.Block:
    """Load weights into ``net`` from any of the files this module reads, checking every name and shape.

    Parameters
    ----------
    net : ResNet
        The network to fill; it need not be initialised.
    filename : str or PathLike
        A Gluon ``save_parameters`` file of this network, a gluoncv ``resnet*_v1b`` parameter file, the
        ``<prefix>-NNNN.params`` of an exported checkpoint, a torchvision/timm or Hugging Face transformers
        state dict as safetensors or (with torch installed) ``.pth``/``.pt``/``.bin``.
    ctx : Context or list of Context, optional
        Where to put the weights; default the current context.
    allow_missing, ignore_extra : bool
        Tolerate parameters that the file lacks / that the network lacks.

    Returns
    -------
    ResNet
        The same ``net``. Arrays are cast to the parameters' dtype (float32 unless cast).

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        Naming the first missing, unexpected or wrong-shape parameter (in the file's own naming); a naming none
        of whose keys names a parameter of ``net`` (listing the supported namings); a transformers
        ``config.json`` beside the file that describes another architecture; or saying why the file cannot be
        read (not a weights file; a PyTorch file without torch, with the conversion to safetensors).
    """
    found = read_named(net, filename)
    check_named(net, found, os.fspath(filename), allow_missing=allow_missing, ignore_extra=ignore_extra, hints=True)
    assign_named(structural_params(net), found, ctx)
    return net


def _arrays_to_save(net: gluon.Block, fmt: str) -> Dict[str, np.ndarray]:
    nhwc = getattr(net, "layout", "NCHW") == "NHWC"
    out: Dict[str, np.ndarray] = {}
    for name, param in structural_params(net).items():
        value = param._reduce().asnumpy()  # pylint: disable=protected-access
        if fmt == "gluon":
            out[name] = value
        elif fmt == "gluoncv":
            out[to_gluoncv(name)] = value
        else:
            key = to_torch(name)
            out[key] = np.ascontiguousarray(np.transpose(value, (0, 3, 1, 2)) if nhwc and value.ndim == 4 else value)
            if name.endswith(".running_var"):  # torch's BatchNorm buffer; only used when its momentum is None
                out[key[: -len("running_var")] + "num_batches_tracked"] = np.zeros((), np.int64)
    return out


def save_parameters(net: gluon.Block, filename: PathLike, *, format: str = "gluon") -> str:  # noqa: A002
    """Save ``net``'s weights in another framework's naming; the file is written whole or not at all.

    Parameters
    ----------
    net : ResNet
        An initialised network.
    filename : str or PathLike
        Output path; an existing file is replaced only once the new one is complete.
    format : {'gluon', 'gluoncv', 'torchvision'}
        'gluon': MXNet ``.params`` with structural names (as ``net.save_parameters``). 'gluoncv': MXNet
        ``.params`` with gluoncv's ``resnet*_v1b`` names. 'torchvision': a safetensors file holding exactly the
        keys, shapes (OIHW convolutions) and dtypes (float32; ``num_batches_tracked`` int64 zeros, as Gluon does
        not count batches) of torchvision's ``resnet*`` state dict, which timm's ``resnet*`` shares.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    ValueError
        An unknown format, or 'torchvision' with a ``.pth``/``.pt`` name (it writes safetensors).
    """
    filename = os.fspath(filename)
    if format not in FORMATS:
        raise ValueError(f"unknown weights format {format!r}; choose one of {', '.join(FORMATS)}")
    if format == "torchvision" and filename.endswith((".pth", ".pt")):
        raise ValueError(f"format='torchvision' writes safetensors; name the file .safetensors, not {filename!r}")
    arrays = _arrays_to_save(net, format)
    with atomic_path(filename) as tmp:
        if format == "torchvision":
            safetensors_numpy().save_file(arrays, tmp, metadata={"format": "pt"})
        else:
            mx.nd.save(tmp, {k: mx.nd.array(v, dtype=v.dtype) for k, v in arrays.items()})
    return filename


def save_gluoncv_parameters(net: gluon.Block, filename: PathLike) -> None:
    """Save ``net``'s weights under gluoncv's ``resnet*_v1b`` names (``save_parameters(format='gluoncv')``)."""
    save_parameters(net, filename, format="gluoncv")

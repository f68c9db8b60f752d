"""Weights files named as a network's parameters, checked and loaded: the steps that
:func:`~resnet_gluon.models.weights.load_parameters` and :mod:`resnet_gluon.models.transfer` (which loads all but
the classifier) share. Public within the package; the user-facing API is :mod:`resnet_gluon.models.weights`.
"""
from __future__ import annotations

import os
from typing import Callable, Dict, NamedTuple, Sequence, Tuple

import mxnet as mx
import numpy as np
from mxnet import gluon

from ._weight_files import read_arrays
from ._weight_names import name_map
from .._core.files import PathLike

__all__ = ["structural_params", "NamedArrays", "read_named", "check_named", "assign_named"]


def structural_params(net: gluon.Block) -> Dict[str, gluon.Parameter]:
    """``net``'s parameters by the names Gluon's own ``save_parameters`` uses (``features.1.0.conv1.weight``)."""
    return net._collect_params_with_prefix()  # pylint: disable=protected-access


# ---------------------------------------------------------------------------------------- reading
class NamedArrays(NamedTuple):
    """A weights file's arrays named as a network's parameters."""

    arrays: Dict[str, Tuple[str, object]]  # structural name -> (the file's key, NumPy or MXNet array)
    file_name: Callable[[str], str]  # structural name -> the file's naming (for messages)


def read_named(net: gluon.Block, filename: PathLike) -> NamedArrays:
    """Read a weights file and name its arrays as ``net``'s parameters, without checking or loading them.

    Keys the format defines as ignorable (``num_batches_tracked``) are left out; keys with no counterpart in
    ``net`` keep a name ``net`` lacks. 4-D weights of PyTorch files are put in the layout of ``net``.
    """
    filename = os.fspath(filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(f"no parameter file {filename!r}")
    kind, arrays = read_arrays(filename)
    names, file_name = name_map(structural_params(net), arrays, filename)
    nhwc_torch = kind != "mxnet" and getattr(net, "layout", "NCHW") == "NHWC"
    out: Dict[str, Tuple[str, object]] = {}
    for key, name in names.items():
        value = arrays[key]
        if nhwc_torch and value.ndim == 4:  # PyTorch's OIHW -> Gluon's NHWC weights (O, kH, kW, I)
            value = np.ascontiguousarray(np.transpose(value, (0, 2, 3, 1)))
        out[name] = (key, value)
    return NamedArrays(out, file_name)


# ----------------------------------------------------------------------------------------- load and save
def check_named(net: gluon.Block, found: NamedArrays, filename: str, *, allow_missing: bool = False,
           ignore_extra: bool = False, skip: Sequence[str] = (), hints: bool = False) -> None:
    """Raise a one-line ValueError for the first missing, wrong-shape, non-float or unexpected array.

    ``hints``: name :func:`load_parameters`' ``allow_missing``/``ignore_extra`` in the messages (only its
    callers have them).
    """
    params = structural_params(net)
    for name, param in params.items():
        if name in skip:
            continue
        if name not in found.arrays:
            if allow_missing:
                continue
            theirs = found.file_name(name)
            ours = "" if theirs == name else f", network name {name!r}"
            hint = " (allow_missing=True skips it)" if hints else ""
            raise ValueError(f"{filename!r} lacks parameter {theirs!r} (shape {param.shape}{ours}) of the network; "
                             f"is it a checkpoint of another model?{hint}")
        key, value = found.arrays[name]
        if param.shape and 0 not in param.shape and tuple(value.shape) != tuple(param.shape):
            raise ValueError(f"parameter {key!r} has shape {tuple(value.shape)} in {filename!r} but "
                             f"{param.shape} in the network (another class count or depth?)")
        if np.dtype(value.dtype).kind != "f":
            raise ValueError(f"parameter {key!r} in {filename!r} has dtype {np.dtype(value.dtype).name}, not a "
                             "floating-point type")
    extra = sorted(key for name, (key, _) in found.arrays.items() if name not in params)
    if extra and not ignore_extra:
        hint = "; ignore_extra=True skips them" if hints else ""
        raise ValueError(f"{filename!r} has parameter {extra[0]!r} that the network lacks "
                         f"({len(extra)} in all{hint})")


def assign_named(params: Dict[str, gluon.Parameter], found: NamedArrays, ctx) -> None:
    """Load the arrays of ``found`` into ``params`` (those it has; by structural name) on ``ctx`` (default the
    current context), cast to each parameter's dtype. Check them first with :func:`check_named`."""
    ctx = ctx if ctx is not None else mx.context.current_context()
    for name, param in params.items():
        if name in found.arrays:
            value = found.arrays[name][1]
            dtype = param.dtype or "float32"
            if isinstance(value, mx.nd.NDArray):
                value = value if value.dtype == np.dtype(dtype) else value.astype(dtype)
            else:
                value = mx.nd.array(value, dtype=dtype)
            param._load_init(value, ctx)  # pylint: disable=protected-access

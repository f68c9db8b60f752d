"""Reading and writing the weights of the ResNet v1.5 networks, in the formats the world publishes them in.

:func:`load_parameters` reads, telling the kind of file by its first bytes (not its name):

- MXNet ``.params`` files: Gluon's ``save_parameters`` of these networks (structural names such as
  ``features.1.0.conv1.weight``), gluoncv's ``resnet*_v1b`` files (``layer1.0.conv1.weight``, ``bn1.gamma``),
  and the reference's exported checkpoints ``<prefix>-NNNN.params`` (``arg:``/``aux:`` names);
- safetensors files, through the ``safetensors`` package's NumPy API (no torch needed);
- PyTorch ``.pth``/``.pt`` state dicts, when torch is importable.

torchvision's and timm's ResNets are the same v1.5 architecture (stride on the 3x3 convolution) under other
names: ``conv1.weight``, ``bn1.{weight,bias,running_mean,running_var}``, ``layerL.B.convK.weight``,
``layerL.B.bnK.*``, ``layerL.B.downsample.0.weight`` / ``downsample.1.*``, ``fc.weight``, ``fc.bias``;
BatchNorm's ``weight``/``bias`` are Gluon's ``gamma``/``beta``, convolution weights are OIHW in both
(``layout='NCHW'``), ``num_batches_tracked`` has no Gluon counterpart and is ignored. Their preprocessing
(RGB, ImageNet mean/std, 224 px crops of 256 px resizes) is :class:`~resnet_gluon.data.Preprocessing`'s default.

:func:`save_parameters` writes Gluon, gluoncv or torchvision (safetensors) files. The torchvision files hold
exactly the keys, shapes and dtypes of torchvision's ``resnet*`` state dicts (which timm's ``resnet*`` share),
for ``torchvision.models.resnet50(num_classes=...).load_state_dict(safetensors.torch.load_file(path))``; the
tests check them against torchvision's structure and published counts (torch is not installed here).
"""
from __future__ import annotations

import os
import re
from typing import Callable, Dict, NamedTuple, Optional, Sequence, Tuple, Union

import mxnet as mx
import numpy as np
from mxnet import gluon

from .files import atomic_path

__all__ = ["load_parameters", "save_parameters", "save_gluoncv_parameters", "FORMATS"]

FORMATS = ("gluon", "gluoncv", "torchvision")
SAFETENSORS_PIN = "safetensors==0.8.0"
_MXNET_MAGIC = 0x112  # first 8 bytes of an NDArray list file (MXNet's kMXAPINDArrayListMagic)
_BN_TORCH = re.compile(r"(^|\.)(bn\d*|downsample\.1)\.(weight|bias)$")
PathLike = Union[str, os.PathLike]


# ------------------------------------------------------------------------------------------------- names
def _from_torch(key: str) -> Optional[str]:
    """A torchvision/timm/gluoncv name -> the structural name; None for ``num_batches_tracked``."""
    if key.endswith(".num_batches_tracked"):
        return None
    key = re.sub(r"^conv1\.", "features.0.conv.", key)
    key = re.sub(r"^bn1\.", "features.0.bn.", key)
    key = re.sub(r"^layer(\d)\.", r"features.\1.", key)
    key = re.sub(r"^fc\.", "output.", key)
    return _BN_TORCH.sub(lambda m: f"{m.group(1)}{m.group(2)}.{'gamma' if m.group(3) == 'weight' else 'beta'}",
                         key)


def _to_gluoncv(name: str) -> str:
    name = re.sub(r"^features\.0\.conv\.", "conv1.", name)
    name = re.sub(r"^features\.0\.bn\.", "bn1.", name)
    name = re.sub(r"^features\.(\d)\.", r"layer\1.", name)
    return re.sub(r"^output\.", "fc.", name)


def _to_torch(name: str) -> str:
    return re.sub(r"\.beta$", ".bias", re.sub(r"\.gamma$", ".weight", _to_gluoncv(name)))


def _structural_params(net: gluon.Block) -> Dict[str, gluon.Parameter]:
    # The names Gluon's own save_parameters uses ("features.1.0.conv1.weight").
    return net._collect_params_with_prefix()  # pylint: disable=protected-access


# ------------------------------------------------------------------------------------------------- files
def _first_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def _file_kind(filename: str) -> str:
    with open(filename, "rb") as f:
        head = f.read(9)
    if len(head) >= 8 and int.from_bytes(head[:8], "little") == _MXNET_MAGIC:
        return "mxnet"
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":  # torch.save: a zip archive, or a legacy pickle
        return "torch"
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < os.path.getsize(filename):
        return "safetensors"
    raise ValueError(f"{filename!r} is not a weights file: neither an MXNet .params file, a safetensors file nor a "
                     "PyTorch state dict")


def _read_mxnet(filename: str) -> Dict[str, mx.nd.NDArray]:
    try:
        loaded = mx.nd.load(filename)
    except mx.MXNetError as err:
        raise ValueError(f"{filename!r} is not a readable MXNet .params file ({_first_line(err)})") from None
    if not isinstance(loaded, dict) or not loaded:
        raise ValueError(f"{filename!r} holds no named parameters; is it a Gluon/MXNet .params file?")
    return loaded


def _safetensors_numpy():
    try:
        import safetensors.numpy
    except ImportError as err:
        raise ImportError(f"safetensors files need the safetensors package ({err}): pip install {SAFETENSORS_PIN}"
                          ) from err
    return safetensors.numpy


def _read_safetensors(filename: str) -> Dict[str, np.ndarray]:
    reader = _safetensors_numpy()
    try:
        return reader.load_file(filename)
    except Exception as err:  # safetensors' SafetensorError derives from Exception only
        if "bfloat16" in str(err):
            raise ValueError(f"{filename!r} holds bfloat16 tensors, which NumPy cannot read; convert them to "
                             "float32 where torch is: safetensors.torch.save_file({k: v.float() for k, v in "
                             f"safetensors.torch.load_file({filename!r}).items()}}, 'float32.safetensors')") from None
        raise ValueError(f"{filename!r} is not a readable safetensors file ({_first_line(err)})") from None


def _torch_hint(filename: str) -> str:
    """The two lines of Python that turn a PyTorch state dict into a safetensors file (run where torch is)."""
    target = os.path.splitext(filename)[0] + ".safetensors"
    return (f"import torch, safetensors.torch; sd = torch.load({filename!r}, map_location='cpu'); "
            f"safetensors.torch.save_file({{k: v.float().contiguous() if v.is_floating_point() else v "
            f"for k, v in sd.get('state_dict', sd).items()}}, {target!r})")


def _read_torch(filename: str) -> Dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise ValueError(f"{filename!r} is a PyTorch file and torch is not installed; convert it to safetensors "
                         f"where torch is, then load that: {_torch_hint(filename)}") from None
    try:
        state = torch.load(filename, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle and zip errors of all kinds
        raise ValueError(f"{filename!r} is not a readable PyTorch state dict ({_first_line(err)})") from None
    for wrapper in ("state_dict", "model"):  # training checkpoints (timm's, torchvision's references)
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not state:
        raise ValueError(f"{filename!r} holds no state dict (a dict of named tensors)")
    arrays = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{filename!r}: entry {key!r} is a {type(value).__name__}, not a tensor")
        value = value.detach().cpu()
        arrays[key] = (value.float() if value.dtype == torch.bfloat16 else value).numpy()
    return arrays


_READERS: Dict[str, Callable[[str], Dict]] = {"mxnet": _read_mxnet, "safetensors": _read_safetensors,
                                              "torch": _read_torch}


# ---------------------------------------------------------------------------------------- name mapping
def _exported_to_structural(net: gluon.Block, keys) -> Dict[str, str]:
    """Map the names of an exported (symbol-style) params file onto ``net``'s structural names."""
    stripped = {k: k.split(":", 1)[1] for k in keys}
    by_name = {p.name: key for key, p in _structural_params(net).items()}
    net_root = os.path.commonprefix(list(by_name))
    # The file's own block prefix ("resnet0_"): the common prefix cut at a "_" that matches the most names
    # (a file without some layers, e.g. the classifier, has a longer common prefix).
    common = os.path.commonprefix(list(stripped.values()))
    roots = [common[: i + 1] for i, c in enumerate(common) if c == "_"] or [""]
    file_root = max(roots, key=lambda r: sum(net_root + n[len(r):] in by_name for n in stripped.values()))
    return {k: by_name.get(net_root + name[len(file_root):], "<symbol>" + name) for k, name in stripped.items()}


def _name_map(net: gluon.Block, keys) -> Tuple[Dict[str, str], Callable[[str], str]]:
    """``{file key: structural name}`` (ignored keys left out) and the structural -> file naming, for messages."""
    keys = list(keys)
    if keys and all(k.startswith("module.") for k in keys):  # saved from torch.nn.DataParallel
        keys = [k[len("module."):] for k in keys]
        unwrap = {k: "module." + k for k in keys}
    else:
        unwrap = {k: k for k in keys}
    if all(k.startswith(("arg:", "aux:")) for k in keys):
        return {unwrap[k]: v for k, v in _exported_to_structural(net, keys).items()}, lambda name: name
    if any(k.startswith(("conv1.", "layer1.", "fc.")) for k in keys):
        gluoncv = any(k.endswith((".gamma", ".beta")) for k in keys)
        mapped = {unwrap[k]: _from_torch(k) for k in keys}
        return {k: v for k, v in mapped.items() if v is not None}, _to_gluoncv if gluoncv else _to_torch
    return {unwrap[k]: k for k in keys}, lambda name: name


class _Found(NamedTuple):
    """A weights file's arrays named as a network's parameters."""

    arrays: Dict[str, Tuple[str, object]]  # structural name -> (the file's key, NumPy or MXNet array)
    file_name: Callable[[str], str]  # structural name -> the file's naming (for messages)


def _read(net: gluon.Block, filename: PathLike) -> _Found:
    """Read a weights file and name its arrays as ``net``'s parameters, without checking or loading them.

    Keys the format defines as ignorable (``num_batches_tracked``) are left out; keys with no counterpart in
    ``net`` keep a name ``net`` lacks. 4-D weights of PyTorch files are put in the layout of ``net``.
    """
    filename = os.fspath(filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(f"no parameter file {filename!r}")
    kind = _file_kind(filename)
    arrays = _READERS[kind](filename)
    names, file_name = _name_map(net, arrays)
    nhwc_torch = kind != "mxnet" and getattr(net, "layout", "NCHW") == "NHWC"
    out: Dict[str, Tuple[str, object]] = {}
    for key, name in names.items():
        value = arrays[key]
        if nhwc_torch and value.ndim == 4:  # PyTorch's OIHW -> Gluon's NHWC weights (O, kH, kW, I)
            value = np.ascontiguousarray(np.transpose(value, (0, 2, 3, 1)))
        out[name] = (key, value)
    return _Found(out, file_name)


# ----------------------------------------------------------------------------------------- load and save
def _check(net: gluon.Block, found: _Found, filename: str, *, allow_missing: bool = False,
           ignore_extra: bool = False, skip: Sequence[str] = ()) -> None:
    """Raise a one-line ValueError for the first missing, wrong-shape, non-float or unexpected array."""
    params = _structural_params(net)
    for name, param in params.items():
        if name in skip:
            continue
        if name not in found.arrays:
            if allow_missing:
                continue
            theirs = found.file_name(name)
            ours = "" if theirs == name else f", network name {name!r}"
            raise ValueError(f"{filename!r} lacks parameter {theirs!r} (shape {param.shape}{ours}) of the network; "
                             "is it a checkpoint of another model? (allow_missing=True to skip it)")
        key, value = found.arrays[name]
        if param.shape and 0 not in param.shape and tuple(value.shape) != tuple(param.shape):
            raise ValueError(f"parameter {key!r} has shape {tuple(value.shape)} in {filename!r} but "
                             f"{param.shape} in the network (another class count or depth?)")
        if np.dtype(value.dtype).kind != "f":
            raise ValueError(f"parameter {key!r} in {filename!r} has dtype {np.dtype(value.dtype).name}, not a "
                             "floating-point type")
    extra = sorted(key for name, (key, _) in found.arrays.items() if name not in params)
    if extra and not ignore_extra:
        raise ValueError(f"{filename!r} has parameter {extra[0]!r} that the network lacks "
                         f"({len(extra)} in all; ignore_extra=True to skip them)")


def _assign(params: Dict[str, gluon.Parameter], found: _Found, ctx) -> None:
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


def load_parameters(net: gluon.Block, filename: PathLike, *, ctx=None, allow_missing: bool = False,
                    ignore_extra: bool = False) -> gluon.Block:
    """Load weights into ``net`` from any of the files this module reads, checking every name and shape.

    Parameters
    ----------
    net : ResNet
        The network to fill; it need not be initialised.
    filename : str or PathLike
        A Gluon ``save_parameters`` file of this network, a gluoncv ``resnet*_v1b`` parameter file, the
        ``<prefix>-NNNN.params`` of an exported checkpoint, a torchvision/timm state dict as safetensors or
        (with torch installed) ``.pth``/``.pt``.
    ctx : Context or list of Context, optional
        Where to put the weights; default the current context.
    allow_missing, ignore_extra : bool
        Tolerate parameters that the file lacks / that the network lacks.

    Returns
    -------
    The same ``net``. Arrays are cast to the parameters' dtype (float32 unless cast).

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        Naming the first missing, unexpected or wrong-shape parameter (in the file's own naming), or saying why
        the file cannot be read (not a weights file; a PyTorch file without torch, with the conversion to
        safetensors).
    """
    found = _read(net, filename)
    _check(net, found, os.fspath(filename), allow_missing=allow_missing, ignore_extra=ignore_extra)
    _assign(_structural_params(net), found, ctx)
    return net


def _arrays_to_save(net: gluon.Block, fmt: str) -> Dict[str, np.ndarray]:
    nhwc = getattr(net, "layout", "NCHW") == "NHWC"
    out: Dict[str, np.ndarray] = {}
    for name, param in _structural_params(net).items():
        value = param._reduce().asnumpy()  # pylint: disable=protected-access
        if fmt == "gluon":
            out[name] = value
        elif fmt == "gluoncv":
            out[_to_gluoncv(name)] = value
        else:
            key = _to_torch(name)
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
            _safetensors_numpy().save_file(arrays, tmp, metadata={"format": "pt"})
        else:
            mx.nd.save(tmp, {k: mx.nd.array(v, dtype=v.dtype) for k, v in arrays.items()})
    return filename


def save_gluoncv_parameters(net: gluon.Block, filename: PathLike) -> None:
    """Save ``net``'s weights under gluoncv's ``resnet*_v1b`` names (``save_parameters(format='gluoncv')``)."""
    save_parameters(net, filename, format="gluoncv")

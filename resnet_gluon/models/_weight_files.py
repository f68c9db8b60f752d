"""The kinds of weights file :mod:`resnet_gluon.models.weights` reads, told apart by parsing their structure.

A file's kind is never decided by one leading byte: a safetensors file begins with its header length, a
little-endian uint64 whose first byte can be anything (torchvision's ResNet-50 state dict gives 28,800 =
0x7080, so its first byte is 0x80, the byte every pickle starts with). Each kind is recognised by its structure
(formats' own definitions):

- MXNet ``.params`` (``mx.nd.save``): uint64 ``kMXAPINDArrayListMagic`` = 0x112, then a reserved uint64 0;
- safetensors: uint64 header length N (at most 100,000,000, the safetensors library's limit), then N bytes of
  UTF-8 JSON holding an object, within the file;
- ``torch.save`` since PyTorch 1.6: a zip archive (found by its end-of-central-directory record) holding
  ``<name>/data.pkl``;
- the legacy ``torch.save``: a pickle (protocol 2-5, parsed opcode by opcode without running it) whose first
  object is torch's magic number 0x1950A86A20F9469CFC6C.
"""
from __future__ import annotations

import itertools
import json
import os
import pickletools
import zipfile
from typing import Callable, Dict, Tuple

import mxnet as mx
import numpy as np

SAFETENSORS_PIN = "safetensors==0.8.0"
_MXNET_MAGIC = 0x112  # dmlc's kMXAPINDArrayListMagic, the first uint64 of mx.nd.save's files
_SAFETENSORS_MAX_HEADER = 100_000_000  # safetensors' MAX_HEADER_SIZE: larger headers are refused by the library
_TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER, the first pickle of a legacy torch.save
_PICKLE_PROTOCOLS = range(2, 6)  # torch.save's legacy format writes protocol 2; 5 is Python's newest


def _first_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


# ------------------------------------------------------------------------------------------- the kinds
def _is_mxnet(f, size: int) -> bool:
    head = f.read(16)
    return len(head) == 16 and int.from_bytes(head[:8], "little") == _MXNET_MAGIC and not any(head[8:])


def _is_safetensors(f, size: int) -> bool:
    head = f.read(8)
    length = int.from_bytes(head, "little") if len(head) == 8 else 0
    if not 2 <= length <= min(size - 8, _SAFETENSORS_MAX_HEADER):
        return False
    try:
        header = json.loads(f.read(length).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return False
    return isinstance(header, dict)


def _is_torch_zip(f, size: int) -> bool:
    if not zipfile.is_zipfile(f):
        return False
    try:
        with zipfile.ZipFile(f) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(name == "data.pkl" or name.endswith("/data.pkl") for name in names)


def _is_torch_pickle(f, size: int) -> bool:
    head = f.read(2)
    if len(head) < 2 or head[0] != 0x80 or head[1] not in _PICKLE_PROTOCOLS:
        return False
    f.seek(0)
    try:  # genops decodes opcodes and their arguments only: nothing is built or run
        ops = [(op.name, arg) for op, arg, _ in itertools.islice(pickletools.genops(f), 4)]
    except Exception:  # noqa: BLE001 -- any decoding failure means "not a pickle"
        return False
    return ("LONG1", _TORCH_MAGIC) in ops  # PROTO, [FRAME,] LONG1 magic, STOP


_KINDS: Tuple[Tuple[str, Callable], ...] = (("mxnet", _is_mxnet), ("safetensors", _is_safetensors),
                                            ("torch", _is_torch_zip), ("torch", _is_torch_pickle))


def file_kind(filename: str) -> str:
    """``'mxnet'``, ``'safetensors'`` or ``'torch'``, from the file's structure (module docstring).

    Raises
    ------
    ValueError
        A file of none of these structures (one line: what each would have needed).
    """
    size = os.path.getsize(filename)
    with open(filename, "rb") as f:
        for kind, matches in _KINDS:
            f.seek(0)
            if matches(f, size):
                return kind
    raise ValueError(f"{filename!r} is not a weights file: not an MXNet .params file (magic 0x112), a safetensors "
                     "file (header length + JSON header), a PyTorch zip archive (with data.pkl) nor a legacy "
                     "torch.save pickle")


# ------------------------------------------------------------------------------------------- the readers
def _read_mxnet(filename: str) -> Dict[str, mx.nd.NDArray]:
    try:
        loaded = mx.nd.load(filename)
    except mx.MXNetError as err:
        raise ValueError(f"{filename!r} is not a readable MXNet .params file ({_first_line(err)})") from None
    if not isinstance(loaded, dict) or not loaded:
        raise ValueError(f"{filename!r} holds no named parameters; is it a Gluon/MXNet .params file?")
    return loaded


def safetensors_numpy():
    """The ``safetensors.numpy`` module, or an ImportError naming the install step."""
    try:
        import safetensors.numpy
    except ImportError as err:
        raise ImportError(f"safetensors files need the safetensors package ({err}): pip install {SAFETENSORS_PIN}"
                          ) from err
    return safetensors.numpy


def _read_safetensors(filename: str) -> Dict[str, np.ndarray]:
    reader = safetensors_numpy()
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


def read_arrays(filename: str) -> Tuple[str, Dict]:
    """``(kind, {key: array})`` of a weights file: MXNet NDArrays for ``'mxnet'``, NumPy arrays otherwise.

    Raises
    ------
    ValueError
        Not a weights file, or one its reader cannot read (the reason in one line; for a PyTorch file without
        torch, the conversion to safetensors to run where torch is).
    ImportError
        A safetensors file without the safetensors package (names the install step).
    """
    kind = file_kind(filename)
    return kind, _READERS[kind](filename)

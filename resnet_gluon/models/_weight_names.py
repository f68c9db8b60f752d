"""The namings of ResNet v1.5 weights files, mapped onto the structural names of our networks.

Our networks' parameters have Gluon's structural names (``features.0.conv.weight``, ``features.1.0.bn2.gamma``,
``features.2.0.downsample.0.weight``, ``output.bias``). A file's naming is the one under which most of its keys
name a parameter of the network; a file none of whose keys does (the classifier's aside) is refused, with the
list of namings read here (:data:`SUPPORTED`). The namings, each from the library's own module structure:

- Gluon: the structural names themselves (``save_parameters`` of these networks);
- exported checkpoint: ``arg:``/``aux:`` plus the blocks' prefixed names (``HybridBlock.export``);
- torchvision/timm (``torchvision/models/resnet.py``): ``conv1``, ``bn1``, ``layerL.B.{convK,bnK}``,
  ``layerL.B.downsample.{0,1}``, ``fc``; BatchNorm ``weight``/``bias`` are Gluon's ``gamma``/``beta``;
- gluoncv ``resnet*_v1b``: torchvision's names with Gluon's ``gamma``/``beta``;
- Hugging Face transformers (``models/resnet/modeling_resnet.py``, ``microsoft/resnet-*``):
  ``resnet.embedder.embedder.{convolution,normalization}``, ``resnet.encoder.stages.S.layers.L.layer.K.*`` (the
  K-th convolution of block L of stage S), ``...layers.L.shortcut.{convolution,normalization}``,
  ``classifier.1``; without the ``resnet.`` prefix when saved from ``ResNetModel``/``ResNetBackbone``.

``num_batches_tracked`` (PyTorch's BatchNorm counter) has no Gluon counterpart and is ignored. All keys may
carry ``module.`` (saved from ``torch.nn.DataParallel``).
"""
from __future__ import annotations

import json
import os
import re
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Tuple

from mxnet import gluon

_BN_TORCH = re.compile(r"(^|\.)(bn\d*|downsample\.1)\.(weight|bias)$")
_BN_GLUON = {"weight": "gamma", "bias": "beta", "running_mean": "running_mean", "running_var": "running_var"}
_BN_TORCH_NAMES = {v: k for k, v in _BN_GLUON.items()}
_HF_BLOCK = re.compile(r"^(?:resnet\.)?encoder\.stages\.(\d+)\.layers\.(\d+)\.(?:layer\.(\d+)|shortcut)\."
                       r"(convolution|normalization)\.(\w+)$")
_HF_STEM = re.compile(r"^(?:resnet\.)?embedder\.embedder\.(convolution|normalization)\.(\w+)$")
_HF_HEAD = re.compile(r"^classifier\.1\.(weight|bias)$")
_OURS_BLOCK = re.compile(r"^features\.(\d+)\.(\d+)\.(?:(conv|bn)(\d)|downsample\.(\d))\.(\w+)$")


def _no_check(filename: str) -> None:
    """Most namings say all there is to know about the network in the weights' names and shapes."""


class Naming(NamedTuple):
    """A naming of ResNet weights: its label (for messages), the two directions, and a check of the file."""

    label: str
    to_net: Callable[[str], Optional[str]]  # file key -> structural name; None for a key the format ignores
    to_file: Callable[[str], str]  # structural name -> file key (for messages)
    check_file: Callable[[str], None] = _no_check  # raises ValueError for a file of another architecture


# ------------------------------------------------------------------------------------ torchvision, gluoncv
def _from_torch(key: str) -> Optional[str]:
    if key.endswith(".num_batches_tracked"):
        return None
    key = re.sub(r"^conv1\.", "features.0.conv.", key)
    key = re.sub(r"^bn1\.", "features.0.bn.", key)
    key = re.sub(r"^layer(\d)\.", r"features.\1.", key)
    key = re.sub(r"^fc\.", "output.", key)
    return _BN_TORCH.sub(lambda m: f"{m.group(1)}{m.group(2)}.{_BN_GLUON[m.group(3)]}", key)


def to_gluoncv(name: str) -> str:
    """A structural name -> gluoncv's ``resnet*_v1b`` name."""
    name = re.sub(r"^features\.0\.conv\.", "conv1.", name)
    name = re.sub(r"^features\.0\.bn\.", "bn1.", name)
    name = re.sub(r"^features\.(\d)\.", r"layer\1.", name)
    return re.sub(r"^output\.", "fc.", name)


def to_torch(name: str) -> str:
    """A structural name -> torchvision's/timm's state-dict key."""
    return re.sub(r"\.beta$", ".bias", re.sub(r"\.gamma$", ".weight", to_gluoncv(name)))


# ---------------------------------------------------------------------------------- Hugging Face transformers
def _hf_part(layer: str, field: str) -> str:
    """``convolution.weight`` / ``normalization.<field>`` -> our ``conv.weight`` / ``bn.<gamma|...>`` suffix."""
    return "weight" if layer == "convolution" else _BN_GLUON.get(field, field)


def _from_transformers(key: str) -> Optional[str]:
    if key.endswith(".num_batches_tracked"):
        return None
    stem, block, head = _HF_STEM.match(key), _HF_BLOCK.match(key), _HF_HEAD.match(key)
    if stem and (stem.group(1) == "normalization" or stem.group(2) == "weight"):
        return f"features.0.{'conv' if stem.group(1) == 'convolution' else 'bn'}.{_hf_part(*stem.groups())}"
    if block and (block.group(4) == "normalization" or block.group(5) == "weight"):
        stage, index, k, layer, field = block.groups()
        conv = layer == "convolution"
        part = f"{'conv' if conv else 'bn'}{int(k) + 1}" if k is not None else f"downsample.{0 if conv else 1}"
        return f"features.{int(stage) + 1}.{index}.{part}.{_hf_part(layer, field)}"
    if head:
        return f"output.{head.group(1)}"
    return key  # no counterpart: reported as an unexpected key, in the file's own naming


def _to_transformers(prefix: str) -> Callable[[str], str]:
    def to_file(name: str) -> str:
        field = name.rsplit(".", 1)[1]
        if name.startswith("output."):
            return f"classifier.1.{field}"
        if name.startswith("features.0."):
            layer = "convolution" if ".conv." in name else "normalization"
            return f"{prefix}embedder.embedder.{layer}.{_BN_TORCH_NAMES.get(field, field)}"
        m = _OURS_BLOCK.match(name)
        if not m:
            return name
        stage, index, kind, k, down, field = m.groups()
        layer = "convolution" if kind == "conv" or down == "0" else "normalization"
        where = f"layer.{int(k) - 1}" if kind else "shortcut"
        return (f"{prefix}encoder.stages.{int(stage) - 1}.layers.{index}.{where}.{layer}."
                f"{_BN_TORCH_NAMES.get(field, field)}")
    return to_file


def check_transformers_config(filename: str) -> None:
    """Refuse a Hugging Face checkpoint whose ``config.json`` (beside the weights) describes another network.

    The weights of ``downsample_in_bottleneck=True`` (stride on the first 1x1: ResNet v1) or
    ``downsample_in_first_stage=True`` have the shapes of v1.5's, so only the configuration tells them apart.

    Raises
    ------
    ValueError
        Naming the setting that differs from these networks'.
    """
    path = os.path.join(os.path.dirname(os.path.abspath(filename)), "config.json")
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, ValueError):
        return
    if not isinstance(config, dict) or config.get("model_type") != "resnet":
        return
    ours = {"downsample_in_bottleneck": False, "downsample_in_first_stage": False, "hidden_act": "relu"}
    for key, value in ours.items():
        if config.get(key, value) != value:
            raise ValueError(f"{path!r} sets {key}={config[key]!r}, but these ResNet v1.5 networks have {value!r} "
                             "(stride on the 3x3 convolution, ReLU): its weights would load and compute something "
                             "else")


# -------------------------------------------------------------------------------------- exported, choice
def _from_exported(params: Dict[str, gluon.Parameter], keys: Iterable[str]) -> Callable[[str], Optional[str]]:
    """The mapping of an exported (symbol-style) params file's keys onto ``params``' structural names."""
    stripped = {k: k.split(":", 1)[1] for k in keys if k.startswith(("arg:", "aux:"))}
    if not stripped:
        return lambda key: key
    by_name = {p.name: key for key, p in params.items()}
    net_root = os.path.commonprefix(list(by_name))
    # The file's own block prefix ("resnet0_"): the common prefix cut at a "_" that matches the most names
    # (a file without some layers, e.g. the classifier, has a longer common prefix).
    common = os.path.commonprefix(list(stripped.values()))
    roots = [common[: i + 1] for i, c in enumerate(common) if c == "_"] or [""]
    file_root = max(roots, key=lambda r: sum(net_root + n[len(r):] in by_name for n in stripped.values()))
    return lambda key: by_name.get(net_root + stripped[key][len(file_root):], key) if key in stripped else key


def _identity(name: str) -> str:
    return name


_EXAMPLES = {"Gluon": "features.1.0.conv1.weight",
             "torchvision/timm": "layer1.0.conv1.weight, bn1.running_var, fc.bias",
             "gluoncv resnet*_v1b": "layer1.0.conv1.weight, bn1.gamma",
             "Hugging Face transformers": "resnet.encoder.stages.0.layers.0.layer.0.convolution.weight, "
                                          "classifier.1.weight",
             "exported checkpoint": "arg:resnet0_stem0_conv0_weight, aux:resnet0_stem0_batchnorm0_running_var"}

#: The namings read, for messages: "label (example keys); ...".
SUPPORTED = "; ".join(f"{label} ({example})" for label, example in _EXAMPLES.items())


def _namings(params: Dict[str, gluon.Parameter], keys: List[str]) -> List[Naming]:
    """Every naming, the file's variant of each (gamma/beta keys, the ``resnet.`` prefix); ties go to the first."""
    gamma = any(k.endswith((".gamma", ".beta")) for k in keys)
    prefix = "resnet." if any(k.startswith("resnet.") for k in keys) else ""
    return [Naming("Gluon", _identity, _identity),
            Naming("gluoncv resnet*_v1b", _from_torch, to_gluoncv) if gamma else
            Naming("torchvision/timm", _from_torch, to_torch),
            Naming("Hugging Face transformers", _from_transformers, _to_transformers(prefix),
                   check_transformers_config),
            Naming("exported checkpoint", _from_exported(params, keys), _identity)]


def name_map(params: Dict[str, gluon.Parameter], keys: Iterable[str],
             filename: str) -> Tuple[Dict[str, str], Callable[[str], str]]:
    """``{file key: structural name}`` (ignored keys left out) and the structural -> file naming, for messages.

    Raises
    ------
    ValueError
        A file that holds no tensors, none of whose keys names a parameter of the network other than the
        classifier's in any naming (the message lists the supported ones), two of whose keys name the same parameter, or whose naming's check
        refuses it (:func:`check_transformers_config`).
    """
    keys = list(keys)
    if not keys:
        raise ValueError(f"{filename!r} holds no tensors")
    wrapper = "module." if all(k.startswith("module.") for k in keys) else ""
    bare = {k: k[len(wrapper):] for k in keys}
    best: Optional[Tuple[int, Naming, Dict[str, Optional[str]]]] = None
    for naming in _namings(params, list(bare.values())):
        mapped = {k: naming.to_net(b) for k, b in bare.items()}
        # The classifier's names alone do not make a naming: Gluon's model zoo names its classifier "output" too.
        hits = sum(name in params and not name.startswith("output.") for name in mapped.values())
        if best is None or hits > best[0]:
            best = (hits, naming, mapped)
    hits, naming, mapped = best
    if not hits:
        raise ValueError(f"{filename!r} names its tensors in none of the namings read here (first key "
                         f"{keys[0]!r}); supported: {SUPPORTED}")
    seen: Dict[str, str] = {}
    for key, name in mapped.items():
        if name is not None and seen.setdefault(name, key) != key:
            raise ValueError(f"{filename!r} has two tensors for parameter {name!r}: {seen[name]!r} and {key!r}")
    naming.check_file(filename)
    return {k: v for k, v in mapped.items() if v is not None}, lambda name: wrapper + naming.to_file(name)

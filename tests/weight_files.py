"""Weight files in the world's formats, written for the tests without torch: torchvision's state dicts as
safetensors, the layouts of torch.save's zip and legacy files. Imported through helpers.py."""
import pickle
import zipfile

import numpy as np
from safetensors.numpy import save_file

TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER, the first pickle of a legacy torch.save

# torchvision.models.resnet{18,50}().state_dict(): 122 and 320 entries (one conv weight per conv, five per
# BatchNorm, fc weight and bias); trainable values 11,689,512 and 25,557,032 (torchvision's published counts).
TORCHVISION = {"resnet18_v1_5": ("basic", (2, 2, 2, 2), 122, 11_689_512),
               "resnet50_v1_5": ("bottleneck", (3, 4, 6, 3), 320, 25_557_032)}


def torchvision_state_dict_shapes(block: str, layers, classes: int = 1000):
    """(key, shape) in torchvision's order, written from torchvision's models/resnet.py, not from our code."""
    entries = []

    def bn(prefix, c):
        entries.extend([(f"{prefix}.weight", (c,)), (f"{prefix}.bias", (c,)), (f"{prefix}.running_mean", (c,)),
                        (f"{prefix}.running_var", (c,)), (f"{prefix}.num_batches_tracked", ())])

    entries.append(("conv1.weight", (64, 3, 7, 7)))
    bn("bn1", 64)
    expansion = 1 if block == "basic" else 4
    inplanes = 64
    for i, blocks_ in enumerate(layers):
        planes = 64 * 2 ** i
        for b in range(blocks_):
            p = f"layer{i + 1}.{b}"
            if block == "basic":
                entries.append((f"{p}.conv1.weight", (planes, inplanes, 3, 3)))
                bn(f"{p}.bn1", planes)
                entries.append((f"{p}.conv2.weight", (planes, planes, 3, 3)))
                bn(f"{p}.bn2", planes)
            else:
                entries.append((f"{p}.conv1.weight", (planes, inplanes, 1, 1)))
                bn(f"{p}.bn1", planes)
                entries.append((f"{p}.conv2.weight", (planes, planes, 3, 3)))
                bn(f"{p}.bn2", planes)
                entries.append((f"{p}.conv3.weight", (planes * 4, planes, 1, 1)))
                bn(f"{p}.bn3", planes * 4)
            if b == 0 and (i > 0 or inplanes != planes * expansion):
                entries.append((f"{p}.downsample.0.weight", (planes * expansion, inplanes, 1, 1)))
                bn(f"{p}.downsample.1", planes * expansion)
            inplanes = planes * expansion
    entries += [("fc.weight", (classes, inplanes)), ("fc.bias", (classes,))]
    return entries


def state_dict_file(path, entries, *, seed=0, drop=(), extra=None, metadata=(("format", "pt"),)):
    """A safetensors file of PyTorch's dtypes for ``(key, shape)`` entries, every value distinct and random
    (running variances in [0.5, 1.5]); ``metadata=None`` writes what ``safetensors.torch.save_file(sd, path)``
    writes."""
    rng = np.random.RandomState(seed)
    arrays = {}
    for key, shape in entries:
        if key.endswith("num_batches_tracked"):
            arrays[key] = np.zeros((), np.int64)
        elif key.endswith("running_var"):
            arrays[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            arrays[key] = rng.normal(0, 0.1, shape).astype(np.float32)
    for key in drop:
        del arrays[key]
    arrays.update(extra or {})
    save_file(arrays, str(path), metadata=dict(metadata) if metadata is not None else None)
    return arrays


def torchvision_file(path, name, *, classes=1000, **options):
    """A safetensors file with torchvision's keys, shapes and dtypes (options: :func:`state_dict_file`'s)."""
    block, layers, _, _ = TORCHVISION[name]
    return state_dict_file(path, torchvision_state_dict_shapes(block, layers, classes), **options)


def torch_zip(path):
    """The layout of torch.save's zip files (PyTorch >= 1.6): <name>/data.pkl, <name>/version, <name>/data/0."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("resnet50/data.pkl", pickle.dumps({"fc.bias": "storage 0"}, protocol=2))
        archive.writestr("resnet50/version", "3\n")
        archive.writestr("resnet50/data/0", bytes(16))


def torch_legacy(path, protocol=2):
    """The start of a legacy torch.save file (pickle protocol 2 unless told): pickles of the magic number, the
    protocol version, system info."""
    path.write_bytes(pickle.dumps(TORCH_MAGIC, protocol=protocol) + pickle.dumps(1001, protocol=protocol)
                     + pickle.dumps({"little_endian": True}, protocol=protocol) + bytes(32))

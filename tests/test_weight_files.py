"""A weights file's kind comes from its structure, never from one leading byte: every safetensors header length
(mod 256) loads, torchvision's ResNet-50 (header length 0x7080, first byte 0x80) loads, PyTorch's zip and legacy
pickle files are told from other zips and pickles."""
import pickle
import struct
import sys
import zipfile

import mxnet as mx
import numpy as np
import pytest
from safetensors.numpy import save

import resnet_gluon as rg
from resnet_gluon.models._weight_files import file_kind
from resnet_gluon.models.transfer import load_pretrained
from resnet_gluon.models.weights import load_parameters
from helpers import torch_legacy, torch_zip, torchvision_file


def header_length(path) -> int:
    with open(path, "rb") as f:
        return struct.unpack("<Q", f.read(8))[0]


def save_with_header_length(arrays, path, length):
    """A safetensors file whose 8-byte header length is ``length``: the NumPy API's file, its metadata padded
    so the JSON header is ``length`` bytes. The library pads headers with spaces to a multiple of 8; for other
    lengths the JSON is written unpadded (the format allows any length; older writers did so). Returns whether
    the bytes are the library's own."""
    bare = save(arrays, metadata={"padding": ""})
    json_length = len(bare[8:8 + header_length_of(bare)].rstrip(b" "))
    assert length >= json_length, (length, json_length)
    raw = save(arrays, metadata={"padding": "x" * (length - json_length)})
    n = header_length_of(raw)
    header = raw[8:8 + n].rstrip(b" ")
    assert len(header) == length
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", length) + header + raw[8 + n:])
    return n == length


def header_length_of(raw: bytes) -> int:
    return struct.unpack("<Q", raw[:8])[0]


@pytest.fixture(scope="module")
def net18():
    return rg.resnet18_v1_5(classes=2)


@pytest.mark.parametrize("residue", range(256))
def test_every_safetensors_header_length_mod_256_loads(tmp_path, net18, residue):
    length = 256 + residue  # 256 + 0x12 = 0x112: the first 8 bytes are MXNet's NDArray-list magic
    value = np.arange(64, dtype=np.float32) - residue
    library_bytes = save_with_header_length({"bn1.running_var": value}, tmp_path / "w.safetensors", length)
    assert library_bytes == (residue % 8 == 0)
    raw = (tmp_path / "w.safetensors").read_bytes()
    assert raw[0] == residue and header_length(tmp_path / "w.safetensors") == length
    assert file_kind(str(tmp_path / "w.safetensors")) == "safetensors"
    load_parameters(net18, tmp_path / "w.safetensors", allow_missing=True)
    assert np.array_equal(net18.features[0].bn.running_var.data().asnumpy(), value)


def test_torchvision_resnet50_with_header_length_0x7080_loads(tmp_path, capsys):
    """What ``safetensors.torch.save_file(torchvision.models.resnet50().state_dict(), path)`` writes: 320 keys
    and a header of 28,800 = 0x7080 bytes, so the file's first byte is 0x80 (a pickle's first byte)."""
    path = tmp_path / "r50.safetensors"
    source = torchvision_file(path, "resnet50_v1_5", seed=7, metadata=None)
    assert len(source) == 320 and header_length(path) == 0x7080 and path.read_bytes()[0] == 0x80
    net = load_parameters(rg.resnet50_v1_5(), path)
    assert np.array_equal(net.features[0].conv.weight.data().asnumpy(), source["conv1.weight"])
    assert np.array_equal(net.features[3][5].bn3.running_var.data().asnumpy(), source["layer3.5.bn3.running_var"])
    assert np.array_equal(net.features[4][0].downsample[0].weight.data().asnumpy(),
                          source["layer4.0.downsample.0.weight"])
    assert np.array_equal(net.features[2][3].bn2.beta.data().asnumpy(), source["layer2.3.bn2.bias"])
    assert np.array_equal(net.output.bias.data().asnumpy(), source["fc.bias"])
    tuned = load_pretrained(rg.resnet50_v1_5(classes=5), path)  # the README's fine-tuning example
    assert np.array_equal(tuned.features[4][2].conv3.weight.data().asnumpy(), source["layer4.2.conv3.weight"])
    assert "1000 classes, the network 5" in capsys.readouterr().err


def other_zip(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("weights.txt", "not a state dict")


@pytest.mark.parametrize("make,kind", [(torch_zip, "torch"), (torch_legacy, "torch"),
                                       (lambda p: torch_legacy(p, protocol=4), "torch"), (other_zip, None),
                                       (lambda p: p.write_bytes(pickle.dumps({"w": [1.0]}, protocol=2)), None),
                                       (lambda p: p.write_bytes(b"\x80\x02" + bytes(30)), None),
                                       (lambda p: p.write_bytes(b"PK\x03\x04" + bytes(60)), None),
                                       (lambda p: p.write_bytes(struct.pack("<QQ", 0x112, 7) + bytes(8)), None)])
def test_pytorch_files_are_told_by_their_structure(tmp_path, monkeypatch, make, kind):
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    path = tmp_path / "w.pth"
    make(path)
    if kind:
        assert file_kind(str(path)) == kind
        with pytest.raises(ValueError, match="is a PyTorch file and torch is not installed"):
            load_parameters(rg.resnet18_v1_5(), path)
    else:
        with pytest.raises(ValueError, match=r"is not a weights file: not an MXNet \.params file") as err:
            load_parameters(rg.resnet18_v1_5(), path)
        assert "\n" not in str(err.value)


def test_mxnet_files_are_told_by_magic_and_reserved_word(tmp_path):
    net = rg.resnet18_v1_5(classes=2)
    net.initialize()
    net.save_parameters(str(tmp_path / "w.params"))
    assert (tmp_path / "w.params").read_bytes()[:16] == struct.pack("<QQ", 0x112, 0)
    assert file_kind(str(tmp_path / "w.params")) == "mxnet"
    mx.nd.save(str(tmp_path / "empty.params"), {})
    with pytest.raises(ValueError, match="holds no named parameters"):
        load_parameters(rg.resnet18_v1_5(), tmp_path / "empty.params")

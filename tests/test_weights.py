"""Weights in the world's formats: torchvision/timm safetensors (and .pth), gluoncv, Gluon; the errors."""
import json
import os
import struct
import sys

import mxnet as mx
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from helpers import TORCHVISION, torch_legacy, torch_zip, torchvision_file, torchvision_state_dict_shapes
import resnet_gluon as rg
from resnet_gluon.models import blocks
from resnet_gluon.models.weights import load_parameters, save_parameters


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_torchvision_safetensors_round_trip_bit_for_bit(tmp_path, name):
    _, _, n_keys, n_values = TORCHVISION[name]
    source = torchvision_file(tmp_path / "tv.safetensors", name)
    assert len(source) == n_keys
    assert sum(v.size for k, v in source.items() if not k.endswith(("running_mean", "running_var",
                                                                    "num_batches_tracked"))) == n_values
    net = rg.get_model(name, classes=1000)
    load_parameters(net, tmp_path / "tv.safetensors")

    # Every key landed where torchvision's module order says: our parameters in registration order are
    # torchvision's state dict order without num_batches_tracked (conv, bn weight/bias/mean/var, ..., fc).
    ours = list(net.collect_params().values())
    theirs = [k for k in source if not k.endswith("num_batches_tracked")]
    assert len(ours) == len(theirs)
    for key, param in zip(theirs, ours):
        assert np.array_equal(param.data().asnumpy(), source[key]), (key, param.name)

    save_parameters(net, tmp_path / "back.safetensors", format="torchvision")
    back = load_file(str(tmp_path / "back.safetensors"))
    assert sorted(back) == sorted(source)
    for key, value in source.items():
        assert back[key].dtype == value.dtype and back[key].shape == value.shape, key
        assert np.array_equal(back[key], value), key
    assert open(tmp_path / "back.safetensors", "rb").read() == open(tmp_path / "tv.safetensors", "rb").read()


def test_torchvision_weights_compute_what_gluoncv_computes(tmp_path):
    """The semantic check: the same file through torchvision names (ours) and gluoncv names (gluoncv's own net)."""
    gluoncv = pytest.importorskip("gluoncv")
    source = torchvision_file(tmp_path / "tv.safetensors", "resnet50_v1_5", seed=3)
    ours = rg.resnet50_v1_5(classes=1000)
    load_parameters(ours, tmp_path / "tv.safetensors")
    rg.models.save_gluoncv_parameters(ours, tmp_path / "v1b.params")
    theirs = gluoncv.model_zoo.resnet50_v1b(pretrained=False, classes=1000)
    theirs.load_parameters(str(tmp_path / "v1b.params"))
    assert np.array_equal(theirs.layer3[2].bn2.gamma.data().asnumpy(), source["layer3.2.bn2.weight"])
    assert np.array_equal(theirs.layer1[0].downsample[1].beta.data().asnumpy(), source["layer1.0.downsample.1.bias"])
    x = mx.nd.random.normal(shape=(2, 3, 64, 64))
    np.testing.assert_allclose(ours(x).asnumpy(), theirs(x).asnumpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name,block,layers,published", [
    ("resnet34_v1_5", "basic", (3, 4, 6, 3), 21_797_672), ("resnet101_v1_5", "bottleneck", (3, 4, 23, 3), 44_549_160),
    ("resnet152_v1_5", "bottleneck", (3, 8, 36, 3), 60_192_808)])
def test_other_depths_take_and_give_torchvision_keys(tmp_path, name, block, layers, published):
    entries = torchvision_state_dict_shapes(block, layers)
    assert sum(int(np.prod(s)) for k, s in entries if k.endswith(("weight", "bias"))) == published
    save_file({k: np.zeros(s, np.int64 if k.endswith("tracked") else np.float32) for k, s in entries},
              str(tmp_path / "tv.safetensors"))
    net = load_parameters(rg.get_model(name), tmp_path / "tv.safetensors")
    save_parameters(net, tmp_path / "back.safetensors", format="torchvision")
    back = load_file(str(tmp_path / "back.safetensors"))
    assert sorted(back) == sorted(k for k, _ in entries)
    assert all(back[k].shape == s for k, s in entries)


def test_gluon_and_gluoncv_formats_round_trip(tmp_path):
    net = rg.resnet18_v1_5(classes=4)
    net.initialize()
    for fmt in ("gluon", "gluoncv"):
        save_parameters(net, tmp_path / f"{fmt}.params", format=fmt)
        back = load_parameters(rg.resnet18_v1_5(classes=4), tmp_path / f"{fmt}.params")
        assert all(np.array_equal(a.data().asnumpy(), b.data().asnumpy())
                   for a, b in zip(net.collect_params().values(), back.collect_params().values()))
    assert "layer1.0.conv1.weight" in mx.nd.load(str(tmp_path / "gluoncv.params"))
    assert "features.1.0.conv1.weight" in mx.nd.load(str(tmp_path / "gluon.params"))


def _one_line(excinfo):
    assert "\n" not in str(excinfo.value), str(excinfo.value)
    return str(excinfo.value)


def test_wrong_depth_missing_key_and_unexpected_key_name_the_key(tmp_path):
    torchvision_file(tmp_path / "r18.safetensors", "resnet18_v1_5")
    with pytest.raises(ValueError, match=r"parameter 'layer1\.0\.conv1\.weight' has shape \(64, 64, 3, 3\) in .* "
                                         r"but \(64, 64, 1, 1\) in the network") as err:
        load_parameters(rg.resnet50_v1_5(), tmp_path / "r18.safetensors")
    _one_line(err)
    torchvision_file(tmp_path / "r50.safetensors", "resnet50_v1_5")
    with pytest.raises(ValueError, match=r"lacks parameter 'layer3\.6\.conv1\.weight' \(shape \(256, 1024, 1, 1\), "
                                         r"network name 'features\.3\.6\.conv1\.weight'\)") as err:
        load_parameters(rg.resnet101_v1_5(), tmp_path / "r50.safetensors")
    _one_line(err)
    torchvision_file(tmp_path / "missing.safetensors", "resnet18_v1_5", drop=["layer2.0.bn1.running_var"])
    with pytest.raises(ValueError, match=r"lacks parameter 'layer2\.0\.bn1\.running_var'") as err:
        load_parameters(rg.resnet18_v1_5(), tmp_path / "missing.safetensors")
    _one_line(err)
    torchvision_file(tmp_path / "extra.safetensors", "resnet18_v1_5", extra={"layer5.0.conv1.weight": np.zeros(3, "f")})
    with pytest.raises(ValueError, match=r"has parameter 'layer5\.0\.conv1\.weight' that the network lacks") as err:
        load_parameters(rg.resnet18_v1_5(), tmp_path / "extra.safetensors")
    _one_line(err)
    torchvision_file(tmp_path / "int.safetensors", "resnet18_v1_5", extra={"fc.bias": np.zeros(1000, np.int32)})
    with pytest.raises(ValueError, match=r"'fc\.bias' .* has dtype int32, not a floating-point type"):
        load_parameters(rg.resnet18_v1_5(), tmp_path / "int.safetensors")


@pytest.mark.parametrize("content", [b"just some text, no tensors here\n", b'{"weights": [1, 2, 3]}',
                                     b"\x12\x01\x00\x00\x00\x00\x00\x00 truncated", b"\x10\x00\x00\x00\x00\x00\x00\x00{"])
def test_non_tensor_files_give_one_line_errors(tmp_path, content):
    path = tmp_path / "weights.safetensors"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"weights\.safetensors") as err:
        load_parameters(rg.resnet18_v1_5(), path)
    _one_line(err)
    with pytest.raises(FileNotFoundError, match="no parameter file"):
        load_parameters(rg.resnet18_v1_5(), tmp_path / "nothing.safetensors")


def test_bfloat16_safetensors_say_how_to_convert(tmp_path):
    header = json.dumps({"conv1.weight": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}).encode()
    (tmp_path / "bf16.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(4))
    with pytest.raises(ValueError, match=r"holds bfloat16 tensors, which NumPy cannot read; convert") as err:
        load_parameters(rg.resnet18_v1_5(), tmp_path / "bf16.safetensors")
    _one_line(err)


def test_pth_without_torch_says_how_to_convert(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    path = tmp_path / "resnet50.pth"
    torch_zip(path)
    with pytest.raises(ValueError, match=r"PyTorch file and torch is not installed; convert it to safetensors") as err:
        load_parameters(rg.resnet50_v1_5(), path)
    message = _one_line(err)
    assert "safetensors.torch.save_file(" in message and "resnet50.safetensors" in message
    with pytest.raises(ValueError, match="writes safetensors"):
        save_parameters(rg.resnet18_v1_5(), tmp_path / "out.pth", format="torchvision")


def test_pth_with_torch_is_read_through_torch_load(tmp_path, monkeypatch):
    """torch is not installed here: a stand-in with torch's API checks how state dicts are unwrapped and read."""
    source = torchvision_file(tmp_path / "tv.safetensors", "resnet18_v1_5", seed=5)

    class Tensor:
        def __init__(self, a):
            self.a, self.dtype = a, "float32"

        def detach(self):
            return self

        def cpu(self):
            return self

        def numpy(self):
            return self.a

    fake = type(sys)("torch")
    fake.Tensor, fake.bfloat16 = Tensor, "bfloat16"
    fake.load = lambda f, map_location, weights_only: {"epoch": 3, "state_dict": {
        "module." + k: Tensor(v) for k, v in source.items()}}
    monkeypatch.setitem(sys.modules, "torch", fake)
    torch_legacy(tmp_path / "ckpt.pth")
    net = load_parameters(rg.resnet18_v1_5(), tmp_path / "ckpt.pth")
    assert np.array_equal(net.features[4][1].bn2.running_mean.data().asnumpy(), source["layer4.1.bn2.running_mean"])


def test_nhwc_nets_get_their_weight_layout(tmp_path, monkeypatch):
    # NHWC runs on GPUs only; building one (no forward pass) is enough to check the weight layout.
    monkeypatch.setattr(blocks, "_NHWC_RUNS_ON_CPU", True)
    source = torchvision_file(tmp_path / "tv.safetensors", "resnet18_v1_5")
    net = load_parameters(rg.resnet18_v1_5(layout="NHWC"), tmp_path / "tv.safetensors")
    assert net.features[0].conv.weight.shape == (64, 7, 7, 3)
    assert np.array_equal(net.features[0].conv.weight.data().asnumpy(), source["conv1.weight"].transpose(0, 2, 3, 1))
    save_parameters(net, tmp_path / "back.safetensors", format="torchvision")
    back = load_file(str(tmp_path / "back.safetensors"))
    assert all(np.array_equal(back[k], v) for k, v in source.items())


def test_saving_is_atomic(tmp_path):
    net = rg.resnet18_v1_5(classes=2)
    net.initialize()
    target = tmp_path / "w.safetensors"
    target.write_bytes(b"precious")
    with pytest.raises(ValueError, match="unknown weights format"):
        save_parameters(net, target, format="onnx")
    uninitialised = rg.resnet18_v1_5(classes=2)
    with pytest.raises(RuntimeError):
        save_parameters(uninitialised, target, format="torchvision")
    assert target.read_bytes() == b"precious" and os.listdir(tmp_path) == ["w.safetensors"]

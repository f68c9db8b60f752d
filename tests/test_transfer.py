"""Transfer learning: a new classifier over pretrained features, frozen or slowed features, the CLI flags, and
a measurement that pretrained features help (Fashion-MNIST classes 0-4 -> 5-9)."""
import glob
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

import resnet_gluon as rg
from conftest import REPO
from helpers import ArrayBatches, quadrant_problem
from resnet_gluon.transfer import freeze_features, load_pretrained, prepare_fine_tuning, set_features_lr_mult
from resnet_gluon.weights import load_parameters, save_parameters
from test_weights import torch_zip, torchvision_file


def _features(net):
    return {k: p.data().asnumpy() for k, p in net.features.collect_params().items()}


def test_new_classifier_when_the_class_count_differs(tmp_path, capsys):
    source = torchvision_file(tmp_path / "tv.safetensors", "resnet18_v1_5", seed=2)
    net = load_pretrained(rg.resnet18_v1_5(classes=5), tmp_path / "tv.safetensors")
    assert np.array_equal(net.features[3][1].bn1.running_var.data().asnumpy(), source["layer3.1.bn1.running_var"])
    assert np.array_equal(net.features[0].conv.weight.data().asnumpy(), source["conv1.weight"])
    assert net.output.weight.shape == (5, 512) and np.abs(net.output.weight.data().asnumpy()).sum() > 0
    assert not net.output.bias.data().asnumpy().any()  # Dense's zero bias initializer
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "1000 classes, the network 5" in lines[0] and "newly initialised" in lines[0]
    assert net(mx.nd.zeros((1, 3, 32, 32))).shape == (1, 5)

    same = load_pretrained(rg.resnet18_v1_5(classes=1000), tmp_path / "tv.safetensors")
    assert np.array_equal(same.output.weight.data().asnumpy(), source["fc.weight"])
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError, match=r"'fc\.weight' has shape \(1000, 512\)"):
        load_pretrained(rg.resnet18_v1_5(classes=5), tmp_path / "tv.safetensors", classes_mismatch="error")
    torchvision_file(tmp_path / "holed.safetensors", "resnet18_v1_5", drop=["layer4.1.conv2.weight"])
    with pytest.raises(ValueError, match=r"lacks parameter 'layer4\.1\.conv2\.weight'"):
        load_pretrained(rg.resnet18_v1_5(classes=5), tmp_path / "holed.safetensors")


def test_pretrained_from_our_exported_checkpoint_and_a_features_only_file(tmp_path, capsys):
    src = rg.resnet18_v1_5(classes=7)
    src.initialize()
    _, params_file = rg.export_checkpoint(src, tmp_path / "model", 4, input_shape=(1, 3, 32, 32))
    net = load_pretrained(rg.resnet18_v1_5(classes=3), params_file)
    assert all(np.array_equal(a, b) for a, b in zip(_features(src).values(), _features(net).values()))
    assert "7 classes, the network 3" in capsys.readouterr().err
    arrays = {k: v for k, v in mx.nd.load(str(tmp_path / "model-0004.params")).items() if "dense" not in k}
    mx.nd.save(str(tmp_path / "features.params"), arrays)
    load_pretrained(rg.resnet18_v1_5(classes=3), tmp_path / "features.params")
    assert "no classifier, the network 3" in capsys.readouterr().err


def _one_step(net, x, y):
    """The change of every parameter (structural names) in one fit step."""
    params = net._collect_params_with_prefix()
    before = {k: p.data().asnumpy().copy() for k, p in params.items()}
    rg.fit(net, ArrayBatches(x, y, len(x)), None, epochs=1, lr=0.5, dtype="float32", progress=False,
           batch_size=len(x))
    return {k: params[k].data().asnumpy() - v for k, v in before.items()}


def test_fit_honours_lr_mult_and_frozen_features(tmp_path):
    """Through fit's Trainer (Horovod's DistributedTrainer at size 1): lr_mult scales each update, frozen
    parameters are left alone."""
    x, y = quadrant_problem(8, size=32, classes=3)
    reference = rg.resnet18_v1_5(classes=3, last_gamma=False)
    reference.initialize()
    save_parameters(reference, tmp_path / "start.params")

    def start():
        return load_parameters(rg.resnet18_v1_5(classes=3, last_gamma=False), tmp_path / "start.params")

    full = _one_step(start(), x, y)
    tenth = _one_step(set_features_lr_mult(start(), 0.1), x, y)
    frozen = _one_step(freeze_features(start()), x, y)
    conv, head = "features.2.1.conv1.weight", "output.weight"
    assert np.abs(full[conv]).max() > 0
    np.testing.assert_allclose(tenth[conv], 0.1 * full[conv], rtol=1e-3, atol=1e-8)
    np.testing.assert_allclose(tenth[head], full[head], rtol=1e-4, atol=1e-8)
    trainable = [k for k in frozen if k.startswith("features.") and "running" not in k]
    assert len(trainable) == 60 and not any(frozen[k].any() for k in trainable)
    assert np.abs(frozen[head]).max() > 0


def test_prepare_fine_tuning_rejects_both_options_and_bad_multipliers():
    with pytest.raises(ValueError, match="not both"):
        prepare_fine_tuning(rg.resnet18_v1_5(), freeze_features=True, features_lr_mult=0.1)
    with pytest.raises(ValueError, match="must be >= 0"):
        set_features_lr_mult(rg.resnet18_v1_5(), -1)
    with pytest.raises(ValueError, match="expected a ResNet"):
        freeze_features(mx.gluon.nn.Dense(3))


_TRAIN = ["train", "--data-backend", "synthetic", "--num-classes", 3, "--arch", "resnet18_v1_5", "--image-size", 32,
          "-b", 4, "--synthetic-batches", 2, "--num-epochs", 1, "--dtype", "float32", "--no-progress"]


@pytest.mark.slow
def test_cli_train_from_pretrained_with_frozen_features(tmp_path):
    source = torchvision_file(tmp_path / "tv.safetensors", "resnet18_v1_5", seed=4)
    proc = subprocess.run([sys.executable, "-m", "resnet_gluon", *map(str, _TRAIN), "--model-prefix", tmp_path / "m",
                           "--pretrained", tmp_path / "tv.safetensors", "--freeze-features"],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "1000 classes, the network 3" in proc.stderr
    saved = sorted(glob.glob(str(tmp_path / "m*.params")))
    assert saved, os.listdir(tmp_path)
    net = load_parameters(rg.resnet18_v1_5(classes=3), saved[-1])
    assert np.array_equal(net.features[2][0].conv2.weight.data().asnumpy(), source["layer2.0.conv2.weight"])
    assert np.array_equal(net.features[4][1].bn2.gamma.data().asnumpy(), source["layer4.1.bn2.weight"])


@pytest.mark.parametrize("extra,message", [
    (["--pretrained", "none.safetensors"], "no parameter file 'none.safetensors'"),
    (["--pretrained", "w.pth"], "PyTorch file and torch is not installed"),
    (["--freeze-features", "--features-lr-mult", "0.1"], "not both"),
    (["--features-lr-mult", "-1"], "must be >= 0")])
def test_cli_transfer_flags_give_one_line_errors(tmp_path, monkeypatch, capsys, extra, message):
    from resnet_gluon.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "torch", None)
    torch_zip(tmp_path / "w.pth")
    assert main([*map(str, _TRAIN), "--model-prefix", str(tmp_path / "m"), *extra]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("resnet-gluon train: error: ") and message in err[0], err


# ------------------------------------------------------------------------------------- the measurement
def _fashion_mnist(classes, count, split, seed):
    from resnet_gluon import data, fashion_mnist

    images, labels = fashion_mnist.load_split(data.FASHION_MNIST_DIR, split)
    picked = np.flatnonzero(np.isin(labels, classes))
    picked = np.random.RandomState(seed).permutation(picked)[:count]
    x = (images[picked].astype(np.float32) / 255 - 0.286) / 0.353  # Fashion-MNIST's mean and std
    return np.repeat(x[:, None], 3, axis=1), labels[picked] - min(classes)


@pytest.mark.slow
def test_pretrained_features_beat_a_random_start_on_new_classes(tmp_path):
    """Pretrain resnet18_v1_5 on Fashion-MNIST classes 0-4 (6,000 images, 1 epoch), then fine-tune on classes
    5-9 (2,000 images, 1 epoch) from those weights and from a random start, with the same settings."""
    from resnet_gluon import data

    if not os.path.isdir(data.FASHION_MNIST_DIR):
        pytest.fail("the measurement needs the Debian package dataset-fashion-mnist (tools/setup_env.sh installs it)")
    batch = 64
    x, y = _fashion_mnist([0, 1, 2, 3, 4], 6000, "train", seed=0)
    pre = rg.resnet18_v1_5(classes=5)
    rg.fit(pre, ArrayBatches(x, y, batch), None, epochs=1, lr=0.2, dtype="float32", progress=False,
           batch_size=batch)
    save_parameters(pre, tmp_path / "pretrained.safetensors", format="torchvision")

    x, y = _fashion_mnist([5, 6, 7, 8, 9], 2000, "train", seed=1)
    xv, yv = _fashion_mnist([5, 6, 7, 8, 9], 2000, "test", seed=2)
    top1 = {}
    for start in ("random", "pretrained"):
        mx.random.seed(1)
        net = rg.resnet18_v1_5(classes=5)
        if start == "pretrained":
            load_pretrained(net, tmp_path / "pretrained.safetensors")
        history = rg.fit(net, ArrayBatches(x, y, batch), ArrayBatches(xv, yv, 250), epochs=1, lr=0.05,
                         dtype="float32", progress=False, batch_size=batch)
        top1[start] = history.history["val_top1"][-1]
    print(f"Fashion-MNIST 5-9 after one epoch on 2,000 images: validation top-1 {top1}")
    assert top1["pretrained"] >= top1["random"] + 0.05, top1

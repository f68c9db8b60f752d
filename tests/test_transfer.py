"""Transfer learning: a new classifier over pretrained features, frozen or slowed features, the CLI flags, and
a measurement that pretrained features help (Fashion-MNIST classes 0-4 -> 5-9)."""
import glob
import json
import os
import subprocess
import sys
import warnings

import mxnet as mx
import numpy as np
import pytest

import resnet_gluon as rg
from helpers import REPO, ArrayBatches, quadrant_problem, torch_zip, torchvision_file
from resnet_gluon.data.preprocessing import Preprocessing
from resnet_gluon.models.transfer import (
    features_frozen,
    freeze_features,
    load_pretrained,
    prepare_fine_tuning,
    set_features_lr_mult,
)
from resnet_gluon.models.weights import load_parameters, save_parameters


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
    """Through fit's Trainer (Horovod's DistributedTrainer at size 1): lr_mult scales each update; frozen
    features (freeze_features, or an lr multiplier of 0: one rule) are left alone, BatchNorm statistics too."""
    x, y = quadrant_problem(8, size=32, classes=3)
    reference = rg.resnet18_v1_5(classes=3, last_gamma=False)
    reference.initialize()
    save_parameters(reference, tmp_path / "start.params")

    def start():
        return load_parameters(rg.resnet18_v1_5(classes=3, last_gamma=False), tmp_path / "start.params")

    full = _one_step(start(), x, y)
    tenth = _one_step(set_features_lr_mult(start(), 0.1), x, y)
    conv, head, stat = "features.2.1.conv1.weight", "output.weight", "features.2.1.bn1.running_mean"
    assert np.abs(full[conv]).max() > 0 and np.abs(full[stat]).max() > 0
    np.testing.assert_allclose(tenth[conv], 0.1 * full[conv], rtol=1e-3, atol=1e-8)
    np.testing.assert_allclose(tenth[head], full[head], rtol=1e-4, atol=1e-8)
    frozen = _one_step(freeze_features(start()), x, y)
    zero = _one_step(set_features_lr_mult(start(), 0), x, y)
    features = [k for k in frozen if k.startswith("features.")]
    assert len(features) == 100  # 60 trainable, 40 running statistics
    for changes in (frozen, zero):
        assert not any(changes[k].any() for k in features)
        assert np.abs(changes[head]).max() > 0
    np.testing.assert_array_equal(zero[head], frozen[head])


def _pretrained_resnet18(tmp_path, classes=3):
    """resnet18_v1_5 with a new classifier over a torchvision-style file whose running statistics are far from
    any batch's (means ~N(0, 0.1), variances in [0.5, 1.5])."""
    source = torchvision_file(tmp_path / "tv.safetensors", "resnet18_v1_5", seed=6)
    return load_pretrained(rg.resnet18_v1_5(classes=classes), tmp_path / "tv.safetensors", verbose=False), source


def _train_and_predict_mode(block, x):
    with mx.autograd.record(train_mode=True):
        train = block(x)
    return train.asnumpy(), block(x).asnumpy()


def _running_stats(net):
    return {k: p.data().asnumpy().copy() for k, p in net._collect_params_with_prefix().items() if "running" in k}


@pytest.mark.parametrize("freeze", ["freeze_features", "lr_mult_0", "prepare_fine_tuning", "after_hybridize"])
def test_frozen_features_train_on_what_inference_computes(tmp_path, freeze):
    """The rule for frozen features: BatchNorm frozen too. In training mode the frozen part computes what it
    computes for evaluate/predict, and an epoch of fit leaves its running statistics as loaded."""
    net, _ = _pretrained_resnet18(tmp_path)
    x, y = quadrant_problem(8, size=32, classes=3)
    if freeze == "after_hybridize":  # a cached graph built before freezing must not survive it
        net.hybridize()
        net(mx.nd.array(x))
    {"freeze_features": freeze_features, "after_hybridize": freeze_features,
     "lr_mult_0": lambda n: set_features_lr_mult(n, 0),
     "prepare_fine_tuning": lambda n: prepare_fine_tuning(n, features_lr_mult=0.0)}[freeze](net)
    assert features_frozen(net)
    if freeze != "after_hybridize":
        net.hybridize()
    train, predict = _train_and_predict_mode(net.features, mx.nd.array(x))  # the frozen part
    assert np.abs(predict).max() > 0
    np.testing.assert_allclose(train, predict, rtol=1e-6, atol=1e-6)
    train, predict = _train_and_predict_mode(net, mx.nd.array(x))  # the whole net: its cached graph, if any
    np.testing.assert_allclose(train, predict, rtol=1e-5, atol=1e-5)
    before = _running_stats(net)
    rg.fit(net, ArrayBatches(x, y, 4), None, epochs=1, lr=0.5, dtype="float32", progress=False, batch_size=4)
    after = _running_stats(net)
    assert len(before) == 40 and all(np.array_equal(before[k], after[k]) for k in before)
    train, predict = _train_and_predict_mode(net, mx.nd.array(x))
    np.testing.assert_allclose(train, predict, rtol=1e-5, atol=1e-5)


def test_frozen_rule_survives_export_and_checkpoint_reload(tmp_path):
    net, source = _pretrained_resnet18(tmp_path)
    freeze_features(net)
    x, y = quadrant_problem(8, size=32, classes=3)
    prefix = str(tmp_path / "run" / "m")
    rg.fit(net, ArrayBatches(x, y, 4), None, epochs=1, lr=0.5, dtype="float32", progress=False, batch_size=4,
           callbacks=[rg.callbacks.Checkpoint(prefix)])
    expected = net(mx.nd.array(x)).asnumpy()

    # The exported symbol says so, and an imported SymbolBlock trains on what it predicts.
    nodes = json.load(open(f"{prefix}-symbol.json"))["nodes"]
    norms = [n for n in nodes if n["op"] == "BatchNorm"]
    assert len(norms) == 20 and all(n["attrs"]["use_global_stats"] == "True" for n in norms)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SymbolBlock.imports: "Cannot decide type for ... data"
        imported = mx.gluon.SymbolBlock.imports(f"{prefix}-symbol.json", ["data"], f"{prefix}-0001.params")
    train, predict = _train_and_predict_mode(imported, mx.nd.array(x))
    np.testing.assert_allclose(predict, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(train, predict, rtol=1e-5, atol=1e-5)
    loaded, _, _ = rg.checkpoint.load_network(prefix)
    np.testing.assert_allclose(loaded(mx.nd.array(x)).asnumpy(), expected, rtol=1e-5, atol=1e-5)
    from resnet_gluon.deploy.export import export_onnx, onnx_logits

    export_onnx(net, tmp_path / "m.onnx", preprocessing=Preprocessing.for_size(32))
    np.testing.assert_allclose(onnx_logits(tmp_path / "m.onnx", x), expected, rtol=1e-4, atol=1e-5)

    # Resuming into a frozen network keeps it frozen: the statistics are still the pretrained file's.
    again, _ = _pretrained_resnet18(tmp_path)
    freeze_features(again)
    checkpoint = rg.callbacks.Checkpoint(prefix)
    rg.fit(again, ArrayBatches(x, y, 4), None, epochs=2, lr=0.5, dtype="float32", progress=False, batch_size=4,
           callbacks=[checkpoint])
    assert checkpoint.resumed_from == 1 and features_frozen(again)
    for key in ("layer1.0.bn1.running_mean", "layer4.1.bn2.running_var", "layer3.0.downsample.1.running_mean"):
        name = key.replace("layer", "features.")
        assert np.array_equal(again._collect_params_with_prefix()[name].data().asnumpy(), source[key]), key


def test_a_positive_lr_mult_unfreezes(tmp_path):
    net, _ = _pretrained_resnet18(tmp_path)
    x = mx.nd.array(quadrant_problem(8, size=32, classes=3)[0])
    freeze_features(net)
    net.hybridize()
    net(x)
    set_features_lr_mult(net, 0.1)
    assert not features_frozen(net)
    assert net.features[1][0].conv1.weight.grad_req == "write" and net.features[0].bn.running_var.grad_req == "null"
    train, predict = _train_and_predict_mode(net, x)  # not the graph cached while frozen
    assert np.abs(train - predict).max() > 0.1  # batch statistics again
    stem = rg.resnet18_v1_5(classes=3)
    stem.features[0].collect_params().setattr("grad_req", "null")  # the user's own choice: left alone
    set_features_lr_mult(stem, 0.1)
    assert stem.features[0].conv.weight.grad_req == "null" and stem.features[1][0].conv1.weight.grad_req == "write"


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
    assert np.array_equal(net.features[3][0].bn1.running_var.data().asnumpy(), source["layer3.0.bn1.running_var"])


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


def test_cli_features_lr_mult_0_freezes_batchnorm_too(tmp_path, monkeypatch):
    """``--features-lr-mult 0`` is ``--freeze-features``: the checkpoint keeps the pretrained running statistics."""
    from resnet_gluon.cli import main

    monkeypatch.chdir(tmp_path)
    source = torchvision_file(tmp_path / "tv.safetensors", "resnet18_v1_5", seed=8)
    assert main([*map(str, _TRAIN), "--model-prefix", str(tmp_path / "m"), "--pretrained",
                 str(tmp_path / "tv.safetensors"), "--features-lr-mult", "0"]) == 0
    net = load_parameters(rg.resnet18_v1_5(classes=3), tmp_path / "m-0001.params")
    for key in ("bn1.running_mean", "layer1.0.bn2.running_var", "layer4.1.bn1.running_mean"):
        name = key.replace("layer", "features.") if key.startswith("layer") else "features.0.bn." + key[4:]
        assert np.array_equal(net._collect_params_with_prefix()[name].data().asnumpy(), source[key]), key


# ------------------------------------------------------------------------------------- the measurement
def _fashion_mnist(classes, count, split, seed):
    from resnet_gluon.data import recordio, fashion_mnist

    images, labels = fashion_mnist.load_split(recordio.FASHION_MNIST_DIR, split)
    picked = np.flatnonzero(np.isin(labels, classes))
    picked = np.random.RandomState(seed).permutation(picked)[:count]
    x = (images[picked].astype(np.float32) / 255 - 0.286) / 0.353  # Fashion-MNIST's mean and std
    return np.repeat(x[:, None], 3, axis=1), labels[picked] - min(classes)


@pytest.mark.slow
def test_pretrained_features_beat_a_random_start_on_new_classes(tmp_path):
    """Pretrain resnet18_v1_5 on Fashion-MNIST classes 0-4 (3,000 images, 1 epoch, lr rising linearly to 0.04),
    then fine-tune on classes 5-9 (2,000 images, 1 epoch, lr rising to 0.01) from those weights and from a random
    start, with the same settings; validate on 1,000 test images of classes 5-9. Measured: 0.894 against 0.782
    (pretrained on 6,000 images: 0.898, 0.782). The README says how much the gap depends on the lr."""
    from resnet_gluon.data import recordio

    if not os.path.isdir(recordio.FASHION_MNIST_DIR):
        pytest.fail("the measurement needs the Debian package dataset-fashion-mnist (tools/setup_env.sh installs it)")
    batch = 64
    x, y = _fashion_mnist([0, 1, 2, 3, 4], 3000, "train", seed=0)
    pre = rg.resnet18_v1_5(classes=5)
    rg.fit(pre, ArrayBatches(x, y, batch), None, epochs=1, lr=0.04, warmup_epochs=1, dtype="float32",
           progress=False, batch_size=batch)
    save_parameters(pre, tmp_path / "pretrained.safetensors", format="torchvision")

    x, y = _fashion_mnist([5, 6, 7, 8, 9], 2000, "train", seed=1)
    xv, yv = _fashion_mnist([5, 6, 7, 8, 9], 1000, "test", seed=2)
    top1 = {}
    for start in ("random", "pretrained"):
        mx.random.seed(1)
        net = rg.resnet18_v1_5(classes=5)
        if start == "pretrained":
            load_pretrained(net, tmp_path / "pretrained.safetensors")
        history = rg.fit(net, ArrayBatches(x, y, batch), ArrayBatches(xv, yv, 250), epochs=1, lr=0.01,
                         warmup_epochs=1, dtype="float32", progress=False, batch_size=batch)
        top1[start] = history.history["val_top1"][-1]
    print(f"Fashion-MNIST 5-9 after one epoch on 2,000 images: validation top-1 {top1}")
    assert top1["pretrained"] >= top1["random"] + 0.05, top1

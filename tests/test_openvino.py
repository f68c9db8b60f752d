"""The OpenVINO inference backend: float32 logits as MXNet's, INT8 (ONNX Runtime QDQ, run by OpenVINO) close to them,
saved and reloaded as files, and its refusals. Last, the accuracy of both on the
briefly trained Fashion-MNIST model (conftest.fashion_mnist_model)."""
import os

import mxnet as mx
import numpy as np
import pytest

from helpers import val_images
from resnet_gluon.data.preprocessing import Preprocessing, preprocess
from resnet_gluon import resnet18_v1_5
from resnet_gluon.deploy.predictor import Predictor

PRE = Preprocessing.for_size(32)


def _net(seed=0):
    """resnet18_v1_5 with random weights and non-trivial BatchNorm statistics (so folding them is tested)."""
    mx.random.seed(seed)
    net = resnet18_v1_5(classes=10)
    net.initialize(mx.init.Xavier())
    rng = np.random.RandomState(seed)
    for name, p in net.collect_params().items():
        if name.endswith("running_var"):
            p.set_data(mx.nd.array(rng.uniform(0.5, 2.0, p.shape)))
        elif name.endswith("running_mean"):
            p.set_data(mx.nd.array(rng.normal(0, 0.2, p.shape)))
    return net


def _batch(n=48, seed=1):
    return np.random.RandomState(seed).randn(n, 3, 32, 32).astype(np.float32)


def test_float32_logits_agree_with_mxnet():
    net, x = _net(), _batch()
    mxnet_logits = Predictor(net, preprocessing=PRE).logits(x)
    ov = Predictor(net, preprocessing=PRE, backend="openvino", batch_size=16)
    assert (ov.dtype, ov.backend, ov.num_classes) == ("float32", "openvino", 10)
    # The same float32 graph in another engine: within 1e-4 of the logits' scale (measured: ~1e-6).
    assert np.abs(ov.logits(x) - mxnet_logits).max() <= 1e-4 * max(1.0, np.abs(mxnet_logits).max())


def test_int8_is_close_to_float32_and_reloads_as_saved(tmp_path):
    net, x = _net(), _batch()
    reference = Predictor(net, preprocessing=PRE).logits(x)
    calibration = mx.io.NDArrayIter(_batch(64, seed=2), batch_size=32, data_name="data")
    int8 = Predictor(net, preprocessing=PRE, backend="openvino", dtype="int8", calibration=calibration,
                     class_names=[f"c{i}" for i in range(10)])
    assert int8.dtype == "int8"
    logits = int8.logits(x)
    cosine = (logits * reference).sum(1) / np.linalg.norm(logits, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() > 0.99 and (logits.argmax(1) == reference.argmax(1)).mean() >= 0.9, cosine.min()
    files = int8.save(tmp_path / "ov")
    assert files == (str(tmp_path / "ov-0000.onnx"),)
    again = Predictor.from_checkpoint(tmp_path / "ov")
    assert (again.backend, again.dtype, again.class_names[3]) == ("openvino", "int8", "c3")
    np.testing.assert_allclose(again.logits(x), logits, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="saved by an OpenVINO predictor; load it with backend='openvino'"):
        Predictor.from_checkpoint(tmp_path / "ov", backend="mxnet")
    with pytest.raises(ValueError, match="is a int8 model; it cannot be loaded as float32"):
        Predictor.from_checkpoint(tmp_path / "ov", dtype="float32")
    os.remove(files[0])  # a checkpoint missing a listed file is incomplete
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        Predictor.from_checkpoint(tmp_path / "ov")


def test_refusals_are_one_line_errors():
    net = _net()
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'; choose one of mxnet, openvino"):
        Predictor(net, preprocessing=PRE, backend="tensorrt")
    with pytest.raises(ValueError, match="backend='openvino' runs on the CPU"):
        Predictor(net, preprocessing=PRE, backend="openvino", ctx=mx.gpu(0))
    with pytest.raises(ValueError, match="unknown dtype 'float16' for backend='openvino'"):
        Predictor(net, preprocessing=PRE, backend="openvino", dtype="float16")
    with pytest.raises(ValueError, match="dtype='int8' needs calibration data"):
        Predictor(net, preprocessing=PRE, backend="openvino", dtype="int8")


def test_bfloat16_where_openvino_supports_it_and_a_clear_error_elsewhere():
    import openvino as ov

    net, x = _net(), _batch(8)
    if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        bf16 = Predictor(net, preprocessing=PRE, backend="openvino", dtype="bfloat16")
        reference = Predictor(net, preprocessing=PRE).logits(x)
        assert bf16.dtype == "bfloat16"
        assert np.abs(bf16.logits(x) - reference).max() <= 0.05 * np.abs(reference).max()
    else:
        with pytest.raises(ValueError, match="bfloat16 is not supported by OpenVINO on this CPU"):
            Predictor(net, preprocessing=PRE, backend="openvino", dtype="bfloat16")
        # 'auto' is OpenVINO's own choice: float32 on a CPU without BF16
        assert Predictor(net, preprocessing=PRE, backend="openvino", dtype="auto").dtype == "float32"


def test_openvino_float32_and_int8_accuracy(fashion_mnist_model):
    """OpenVINO runs the same float32 model (same top-1), and INT8 calibrated on the MXNet path's images (the same
    .rec, the same preprocessing) stays within the MXNet INT8 test's bounds of float32."""
    prefix, root, _ = fashion_mnist_model
    images, labels = val_images(root)
    f32 = Predictor.from_checkpoint(prefix)
    ov32 = Predictor.from_checkpoint(prefix, backend="openvino")
    ov8 = Predictor.from_checkpoint(prefix, dtype="int8", backend="openvino", calibration=os.path.join(root, "train.rec"))
    batch = preprocess(images, f32.preprocessing)
    reference, same, int8 = f32.logits(batch), ov32.logits(batch), ov8.logits(batch)
    assert np.abs(same - reference).max() <= 1e-4 * max(1.0, np.abs(reference).max())
    top1 = [float((logits.argmax(1) == labels).mean()) for logits in (reference, same, int8)]
    agree = float((int8.argmax(1) == reference.argmax(1)).mean())
    print(f"top-1 on {len(labels)} test images: float32 {top1[0]:.4f}, OpenVINO float32 {top1[1]:.4f}, "
          f"OpenVINO INT8 {top1[2]:.4f} (agrees with float32 on {agree:.1%})")
    assert top1[1] == top1[0]
    # A briefly trained model is sensitive: measured on this resnet18 (float32 0.732) INT8 0.733 with 98.6% of the
    # images keeping their class; the resnet50 this fixture trained before gave 0.710 and 91-92% (min-max,
    # percentile and entropy calibration alike), hence the bound; top-1 within the MXNet INT8 test's bound.
    assert top1[2] >= top1[0] - 0.015 and agree >= 0.88, (top1, agree)
    assert ov8.class_names == f32.class_names and ov8.preprocessing == f32.preprocessing

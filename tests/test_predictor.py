"""The Predictor (deploy/predictor.py): from a checkpoint of the briefly trained Fashion-MNIST model (the session
fixture ``fashion_mnist_model`` in conftest.py), top-k predictions, its errors, bfloat16, an untrained network."""
import mxnet as mx
import numpy as np
import pytest

from helpers import FASHION_MNIST_SIZE, predictor_top1, smooth_image, val_images
from resnet_gluon import resnet50_v1_5
from resnet_gluon.data import recordio
from resnet_gluon.data.preprocessing import Preprocessing, preprocess
from resnet_gluon.deploy.predictor import Predictor


# ------------------------------------------------------------------------------------------ predictor
def test_predictor_from_checkpoint_matches_validation(fashion_mnist_model):
    prefix, root, dali_top1 = fashion_mnist_model
    predictor = Predictor.from_checkpoint(prefix)
    assert predictor.preprocessing.image_size == FASHION_MNIST_SIZE and predictor.class_names[0] == "T-shirt/top"
    images, labels = val_images(root)
    top1 = predictor_top1(predictor, images, labels)
    assert abs(top1 - dali_top1) <= 0.01, (top1, dali_top1)
    # Top-k predictions: names, sorted probabilities that sum to at most 1, one result per input.
    results = predictor.predict(images[:3], top_k=3)
    assert len(results) == 3 and all(len(r.class_indices) == 3 for r in results)
    for r in results:
        assert list(r.probabilities) == sorted(r.probabilities, reverse=True) and sum(r.probabilities) <= 1 + 1e-5
        assert r.name == recordio.FASHION_MNIST_CLASSES[r.label]
    single = predictor.predict(images[0], top_k=20)
    assert single.class_indices == results[0].class_indices[:1] + single.class_indices[1:]
    assert len(single.class_indices) == 10
    with pytest.warns(DeprecationWarning, match="Prediction.class_indices"):
        assert single.classes == single.class_indices


def test_predictor_errors(fashion_mnist_model, tmp_path):
    prefix, root, _ = fashion_mnist_model
    with pytest.raises(ValueError, match="unknown dtype 'int4'"):
        Predictor.from_checkpoint(prefix, dtype="int4")
    with pytest.raises(FileNotFoundError, match="no checkpoint .*model-0007.params.*complete epochs.*: 1, 2$"):
        Predictor.from_checkpoint(prefix, 7)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        Predictor.from_checkpoint(tmp_path / "nothing")
    with pytest.raises(ValueError, match="needs calibration data"):
        Predictor.from_checkpoint(prefix, dtype="int8")
    predictor = Predictor.from_checkpoint(prefix)
    with pytest.raises(ValueError, match=r"expected a preprocessed batch of shape \(N, 3, 32, 32\)"):
        predictor.logits(np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="3 class names for a network with 10 outputs"):
        Predictor(predictor.net, preprocessing=predictor.preprocessing, class_names=["a", "b", "c"])


@pytest.mark.bf16
def test_bfloat16_accuracy(fashion_mnist_model):
    prefix, root, _ = fashion_mnist_model
    images, labels = val_images(root)
    top1_f32 = predictor_top1(Predictor.from_checkpoint(prefix), images, labels)
    top1_bf16 = predictor_top1(Predictor.from_checkpoint(prefix, dtype="bfloat16"), images, labels)
    print(f"top-1 on {len(labels)} test images: float32 {top1_f32:.4f}, bfloat16 {top1_bf16:.4f}")
    assert top1_bf16 >= top1_f32 - 0.01, (top1_f32, top1_bf16)


def test_bfloat16_unsupported_is_a_clear_error(fashion_mnist_model):
    from resnet_gluon._core.amp import bfloat16_supported

    if bfloat16_supported():
        pytest.skip("this CPU supports bfloat16; test_bfloat16_accuracy covers it")
    with pytest.raises(ValueError, match="bfloat16 is not supported on this CPU"):
        Predictor.from_checkpoint(fashion_mnist_model[0], dtype="bfloat16")


def test_predictor_on_an_untrained_network_with_arrays():
    net = resnet50_v1_5(classes=4)
    net.initialize(mx.init.Xavier())
    pre = Preprocessing.for_size(32)
    predictor = Predictor(net, preprocessing=pre, class_names=list("abcd"), batch_size=3)
    rng = np.random.RandomState(0)
    images = [smooth_image(rng, 40 + i, 50) for i in range(7)]  # 7 images in batches of 3
    results = predictor.predict(images, top_k=2)
    assert len(results) == 7 and all(r.names[0] in "abcd" for r in results)
    np.testing.assert_allclose(predictor.logits(preprocess(images, pre))[:1],
                               predictor.logits(preprocess(images[:1], pre)), rtol=1e-4, atol=1e-5)

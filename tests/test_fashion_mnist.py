"""The embedded Fashion-MNIST data set (data/fashion_mnist.py) written as RecordIO."""
import json
import os

import numpy as np
import pytest

from resnet_gluon.data import fashion_mnist, recordio


def test_fashion_mnist_conversion(tmp_path):
    if not os.path.isdir(recordio.FASHION_MNIST_DIR):
        pytest.fail(f"{recordio.FASHION_MNIST_DIR} is missing: tools/setup_env.sh installs dataset-fashion-mnist")
    train, val = fashion_mnist.fashion_mnist_to_recordio(tmp_path, image_size=32, train_limit=50, val_limit=50)
    assert len(train) == 50 and len(val) == 50
    assert json.load(open(tmp_path / "classes.json"))[9] == "Ankle boot"
    import cv2

    label, jpg = next(recordio.read_records(train.rec))
    image = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (32, 32, 3) and label == 9  # the first training image is an ankle boot
    assert recordio.check_records(val.rec, classes=10) == 50


def test_fashion_mnist_missing_names_the_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        fashion_mnist.fashion_mnist_to_recordio(tmp_path, root=tmp_path / "nowhere")

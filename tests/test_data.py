import json
import os

import numpy as np
import pytest

from resnet_gluon import data
from helpers import make_image_folder, make_records


def test_image_folder_roundtrip_keeps_bytes_and_labels(tmp_path):
    paths = make_image_folder(tmp_path / "imgs", counts=(3, 2, 4))
    files = data.images_to_recordio(tmp_path / "imgs", tmp_path / "out" / "train", num_threads=2)
    records = list(data.read_records(files.rec))
    assert len(records) == len(paths) == len(files) == 9
    for (label, path), (read_label, read_bytes) in zip(sorted(paths), records):
        assert read_label == label
        with open(path, "rb") as f:
            assert read_bytes == f.read()  # JPEG bytes pass through unchanged
    assert data.load_classes(tmp_path / "out") == ["class0", "class1", "class2"]
    lst = (tmp_path / "out" / "train.lst").read_text().splitlines()
    assert lst[0].split("\t") == ["0", "0.0", os.path.join("class0", "0.jpg")]
    assert data.check_records(files.rec, classes=3) == 9


def test_existing_files_are_not_overwritten(tmp_path):
    make_image_folder(tmp_path / "imgs")
    data.images_to_recordio(tmp_path / "imgs", tmp_path / "train")
    before = (tmp_path / "train.rec").read_bytes()
    with pytest.raises(FileExistsError, match="train.rec exists"):
        data.images_to_recordio(tmp_path / "imgs", tmp_path / "train")
    assert (tmp_path / "train.rec").read_bytes() == before


def test_png_is_reencoded_and_corrupt_image_named(tmp_path):
    import cv2

    make_image_folder(tmp_path / "imgs", counts=(1, 1))
    cv2.imwrite(str(tmp_path / "imgs" / "class0" / "extra.png"), np.zeros((8, 8, 3), np.uint8))
    files = data.images_to_recordio(tmp_path / "imgs", tmp_path / "ok")
    assert all(b[:2] == b"\xff\xd8" for _, b in data.read_records(files.rec))
    (tmp_path / "imgs" / "class1" / "bad.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ValueError, match=r"bad\.jpg' is not a readable image"):
        data.images_to_recordio(tmp_path / "imgs", tmp_path / "bad")
    assert not (tmp_path / "bad.rec").exists()


def test_empty_and_missing_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.images_to_recordio(tmp_path / "nope", tmp_path / "x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        data.images_to_recordio(tmp_path / "empty", tmp_path / "x")
    (tmp_path / "empty" / "cat").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        data.images_to_recordio(tmp_path / "empty", tmp_path / "x")


def test_missing_rec_and_idx_and_rebuild(tmp_path):
    files, _ = make_records(tmp_path / "d" / "train", 5)
    with pytest.raises(FileNotFoundError, match="val.rec' does not exist"):
        data.record_files(tmp_path / "d" / "val.rec")
    original = open(files.idx).read()
    os.remove(files.idx)
    with pytest.raises(FileNotFoundError, match=r"train\.idx' .* does not exist; rebuild it with .*rebuild_index"):
        data.record_files(files.rec)
    data.rebuild_index(files.rec)
    assert open(files.idx).read() == original
    assert len(data.record_files(files.rec)) == 5


def test_index_that_does_not_match_rec(tmp_path):
    files, _ = make_records(tmp_path / "a", 6)
    other, _ = make_records(tmp_path / "b", 6, size=(64, 80), seed=1)
    os.replace(other.idx, files.idx)  # an index of another file
    with pytest.raises(ValueError, match=r"does not match .*rebuild the index"):
        data.record_files(files.rec)


def test_check_records_names_bad_label_and_corrupt_record(tmp_path):
    files, items = make_records(tmp_path / "t", 4, classes=4)
    with pytest.raises(ValueError, match=r"record 3 of .* has label 3.0, outside \[0, 3\)"):
        data.check_records(files.rec, classes=3)
    items[2] = (0, b"\xff\xd8\xff garbage", "bad.jpg")
    data.write_records(tmp_path / "t", items, overwrite=True)
    with pytest.raises(ValueError, match=r"record 2 of .* not a decodable image"):
        data.check_records(tmp_path / "t.rec")


def test_fashion_mnist_conversion(tmp_path):
    if not os.path.isdir(data.FASHION_MNIST_DIR):
        pytest.fail(f"{data.FASHION_MNIST_DIR} is missing: tools/setup_env.sh installs dataset-fashion-mnist")
    train, val = data.fashion_mnist_to_recordio(tmp_path, image_size=32, train_limit=50, val_limit=50)
    assert len(train) == 50 and len(val) == 50
    assert json.load(open(tmp_path / "classes.json"))[9] == "Ankle boot"
    import cv2

    label, jpg = next(data.read_records(train.rec))
    image = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (32, 32, 3) and label == 9  # the first training image is an ankle boot
    assert data.check_records(val.rec, classes=10) == 50


def test_fashion_mnist_missing_names_the_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.fashion_mnist_to_recordio(tmp_path, root=tmp_path / "nowhere")


def test_preprocessing_validation():
    assert data.Preprocessing.for_size(32).resize == 37
    with pytest.raises(ValueError, match="image_size <= resize"):
        data.Preprocessing(image_size=64, resize=32)
    with pytest.raises(ValueError, match="area"):
        data.Preprocessing(area=(0.0, 1.0))

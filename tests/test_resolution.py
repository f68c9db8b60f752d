"""Different train and test resolutions ("FixRes"; "ResNet strikes back" A3 trains at 160 and tests at 224):
Preprocessing.train_image_size, the recipe's sizes, the pipelines, fit, the checkpoint record, the Predictor,
export, and the command line."""
import json
import subprocess
import sys
import warnings

import mxnet as mx
import numpy as np
import pytest

from helpers import REPO, make_image_folder, make_records
from resnet_gluon import Checkpoint, Predictor, Recipe, fit, resnet18_v1_5
from resnet_gluon.models import checkpoint
from resnet_gluon.data import pipelines
from resnet_gluon.cli import _parser, _preprocessing, _recipe
from resnet_gluon.deploy.export import onnx_logits
from resnet_gluon.data.preprocessing import Preprocessing, preprocess


def _quiet(name, **overrides):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Recipe.preset(name, **overrides)


def test_preprocessing_gives_each_stage_its_size_and_round_trips_through_the_record():
    p = Preprocessing(image_size=24, resize=28, train_image_size=16)
    assert (p.crop_size(train=True), p.crop_size()) == (16, 24)
    assert p.data_shape(2, train=True) == (2, 3, 16, 16) and p.data_shape(2) == (2, 3, 24, 24)
    settings = p.validation_settings()
    assert settings["image_size"] == 24 and settings["train_image_size"] == 16
    assert Preprocessing.from_validation_settings(json.loads(json.dumps(settings))) == p
    # one size (every existing caller): the record is as before, and an old record loads trained at image_size
    same = Preprocessing.for_size(32)
    assert "train_image_size" not in same.validation_settings() and same.data_shape(1, train=True) == (1, 3, 32, 32)
    old = dict(image_size=32, resize=37, mean=list(same.mean), std=list(same.std), layout="NCHW", pad_output=False)
    assert Preprocessing.from_validation_settings(old) == same
    assert Preprocessing.for_size(224, crop_ratio=0.95).resize == 236 and Preprocessing.for_size(224).resize == 256
    with pytest.raises(ValueError, match="train_image_size must be >= 1"):
        Preprocessing(train_image_size=0)
    with pytest.raises(ValueError, match=r"crop_ratio must be in \(0, 1\]"):
        Preprocessing.for_size(32, crop_ratio=1.2)


def test_recipe_sizes_scale_with_the_test_size():
    a3 = _quiet("rsb_a3")
    assert (a3.train_image_size, a3.test_crop_ratio) == (160, 0.95)
    assert not any("resolution" in o or "crop ratio" in o for o in a3.omitted)
    at224, at28 = a3.preprocessing(224), a3.preprocessing(28)
    assert (at224.train_image_size, at224.image_size, at224.resize) == (160, 224, 236)
    assert (at28.train_image_size, at28.image_size, at28.resize) == (20, 28, 29)  # 28 * 160/224; 28 / 0.95
    assert a3.preprocessing(28, train_image_size=24).train_image_size == 24
    assert _quiet("rsb_a2").preprocessing(28).train_image_size is None  # A1/A2 train at the test size
    ref = Recipe().preprocessing(32, area=(0.5, 1.0))
    assert ref == Preprocessing.for_size(32, area=(0.5, 1.0))  # the reference: as before
    assert Recipe.from_dict(json.loads(json.dumps(a3.to_dict()))) == a3
    with pytest.raises(ValueError, match=r"test_crop_ratio must be in \(0, 1\]"):
        Recipe(test_crop_ratio=0)


def test_pipelines_train_and_validate_at_their_own_sizes(tmp_path):
    make_records(tmp_path / "train", 12, size=(40, 48))
    make_records(tmp_path / "val", 6, size=(40, 48), seed=1)
    p = Preprocessing(image_size=24, resize=28, train_image_size=16)
    for backend in ("dali-cpu", "mxnet", "synthetic"):
        train, val = pipelines.imagenet(tmp_path, batch_size=4, backend=backend, preprocessing=p, num_threads=1,
                                        classes=3, num_batches=2)
        assert {x.shape[1:] for x, _ in train} == {(3, 16, 16)}, backend
        assert {x.shape[1:] for x, _ in val} == {(3, 24, 24)}, backend
    # a shard's empty batches (6 images on 4 shards, 2 batches of 1: the last shard's second is empty) keep the
    # shape of its full ones
    for train, size in ((True, 16), (False, 24)):
        shard = pipelines.DALIPipeline(tmp_path / "val.rec", batch_size=1, train=train, preprocessing=p, shard_id=3,
                                       num_shards=4, num_threads=1)
        assert [x.shape for x, _ in shard] == [(1, 3, size, size), (0, 3, size, size)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """resnet18 trained a step at 16 px and validated at 24 px, its checkpoint, and the shapes the net saw."""
    root = tmp_path_factory.mktemp("res")
    make_records(root / "train", 16, size=(40, 48))
    make_records(root / "val", 8, size=(40, 48), seed=1)
    p = Preprocessing(image_size=24, resize=28, train_image_size=16)
    train, val = pipelines.imagenet(root, batch_size=8, preprocessing=p, num_threads=1)
    mx.random.seed(0)
    net = resnet18_v1_5(classes=3)
    seen = []
    net.register_forward_pre_hook(lambda block, inputs: seen.append((autograd_training(), inputs[0].shape)))
    history = fit(net, train, val, recipe=Recipe(epochs=1, lr=0.01, warmup_epochs=0), dtype="float32",
                  progress=False, callbacks=[Checkpoint(root / "m", preprocessing=p, class_names=list("abc"))])
    return root, seen, history


def autograd_training():
    return mx.autograd.is_training()


@pytest.mark.filterwarnings("ignore:.*hybridized while still having forward hook")
def test_fit_trains_at_one_size_and_validates_at_the_other(trained):
    _, seen, history = trained
    assert {shape for training, shape in seen if training} == {(8, 3, 16, 16)}
    assert {shape for training, shape in seen if not training} == {(8, 3, 24, 24)}
    assert 0 <= history.history["val_top1"][-1] <= 1


def test_checkpoint_predictor_and_onnx_use_the_test_size(trained, tmp_path):
    root, _, _ = trained
    record = checkpoint.read_checkpoint_record(root / "m", 1)
    assert record.preprocessing["image_size"] == 24 and record.preprocessing["train_image_size"] == 16
    predictor = Predictor.from_checkpoint(root / "m")
    assert predictor.preprocessing.image_size == 24 and predictor.preprocessing.train_image_size == 16
    image = np.random.RandomState(0).randint(0, 256, (40, 48, 3)).astype(np.uint8)
    shapes = []
    predictor.net.register_forward_pre_hook(lambda block, inputs: shapes.append(inputs[0].shape))
    assert predictor.predict([image])[0].name in "abc"
    assert shapes == [(1, 3, 24, 24)]
    path = predictor.export_onnx(tmp_path / "m.onnx", dynamic_batch=False)
    import onnx

    dims = [d.dim_value for d in onnx.load(path).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 24, 24]
    batch = preprocess([image], predictor.preprocessing)
    assert batch.shape == (1, 3, 24, 24)
    np.testing.assert_allclose(onnx_logits(path, batch), predictor.logits(batch), rtol=1e-3, atol=1e-4)
    saved = predictor.save(tmp_path / "again")  # a saved predictor keeps both sizes in its record
    assert saved and Predictor.from_checkpoint(tmp_path / "again").preprocessing == predictor.preprocessing


def test_train_flags_set_the_sizes():
    parse = _parser().parse_args
    for argv, sizes in ((["--recipe", "rsb_a3"], (160, 224, 236)),
                        (["--recipe", "rsb_a3", "--image-size", "28"], (20, 28, 29)),
                        (["--recipe", "rsb_a3", "--image-size", "32"], (23, 32, 34)),
                        (["--recipe", "rsb_a3", "--image-size", "28", "--train-image-size", "24"], (24, 28, 29)),
                        (["--recipe", "rsb_a3", "--image-size", "28", "--test-crop-ratio", "0.875"], (20, 28, 32)),
                        (["--image-size", "28"], (28, 28, 32))):
        args = parse(["train", *argv])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = _preprocessing(args, _recipe(args))
        assert (p.crop_size(train=True), p.image_size, p.resize) == sizes, argv


@pytest.mark.slow
def test_train_and_predict_cli_with_rsb_a3_sizes(tmp_path):
    make_image_folder(tmp_path / "imgs", counts=(8, 8), size=(40, 44))
    cli = [sys.executable, "-m", "resnet_gluon"]

    def run(*args):
        proc = subprocess.run([*cli, *map(str, args)], capture_output=True, text=True, timeout=600, cwd=REPO)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    run("prepare", "--images", tmp_path / "imgs", "-o", tmp_path / "data", "--val-fraction", 0.25)
    run("train", "--data-root", tmp_path / "data", "--recipe", "rsb_a3", "--image-size", 28, "--arch",
        "resnet18_v1_5", "-b", 4, "--num-epochs", 1, "--warmup-epochs", 0, "--dtype", "float32",
        "--data-threads", 1, "--no-progress", "--model-prefix", tmp_path / "m")
    record = json.load(open(f"{tmp_path / 'm'}-0001.json"))
    assert {k: record["preprocessing"][k] for k in ("train_image_size", "image_size", "resize")} == \
        dict(train_image_size=20, image_size=28, resize=29)
    assert (record["recipe"]["train_image_size"], record["recipe"]["test_crop_ratio"]) == (160, 0.95)
    out = run("predict", "--model-prefix", tmp_path / "m", "--data-root", tmp_path / "data", "-b", 4, "--json",
              "--onnx", tmp_path / "m.onnx")
    assert json.loads(out.strip().splitlines()[-1])["num_images"] == 4
    import onnx

    dims = [d.dim_value for d in onnx.load(str(tmp_path / "m.onnx")).graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [3, 28, 28]


def test_fit_warns_when_the_recipe_resolution_is_not_in_the_train_pipeline():
    recipe = _quiet("rsb_a3", epochs=1, warmup_epochs=0, lr=0.001)

    def run(preprocessing):
        train = pipelines.SyntheticData(batch_size=4, num_batches=1, classes=3, preprocessing=preprocessing)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit(resnet18_v1_5(classes=3), train, recipe=recipe, dtype="float32", progress=False)
        return [str(w.message) for w in caught if "train pipeline" in str(w.message)]

    # (recipe.augment: the preset's RandAugment, without which fit refuses the pipeline, tests/test_augmentation.py)
    assert run(recipe.augment(Preprocessing.for_size(28))) == [
        "recipe 'rsb_a3' trains at 160/224 of the test size (20 px for 28), but the train pipeline crops 28 px: "
        "build its Preprocessing with recipe.preprocessing(28)"]
    assert run(recipe.preprocessing(28)) == []
    assert run(recipe.augment(Preprocessing.for_size(28, train_image_size=24))) == []
    assert run(recipe.preprocessing(28, train_image_size=28)) == []  # train --train-image-size 28: a choice

"""The checkpoint format: completeness, resume under a changed recipe, records, old records, the Trainer's state."""
import dataclasses
import json
import os
import warnings

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from helpers import ArrayBatches, quadrant_problem
from resnet_gluon import Checkpoint, Predictor, Recipe, Trainer, fit, resnet18_v1_5
from resnet_gluon.models import checkpoint
from resnet_gluon.models.blocks import BasicBlock, ResNet


def _small(classes=4):
    net = ResNet(BasicBlock, (1, 1), classes=classes, stem_channels=8)
    net.model_name = "small"
    return net


def _fit(prefix, epochs, capsys=None, **options):
    x, y = quadrant_problem(64, size=16)
    mx.random.seed(0)
    options = dict(dict(lr=0.1, warmup_epochs=0), **options)
    return fit(_small(), ArrayBatches(x, y, 16), epochs=epochs, dtype="float32", progress=False,
               callbacks=[Checkpoint(prefix)], **options)


def _cosine(t, base, total):
    return base * (1 + np.cos(np.pi * t / total)) / 2


def test_extending_a_cosine_run_trains_the_added_epochs(tmp_path, capsys):
    prefix = str(tmp_path / "m")
    first = _fit(prefix, 2, schedule="cosine")
    assert first.history["lr"][-1] == pytest.approx(0.0, abs=1e-9)  # the 2-epoch schedule ended
    capsys.readouterr()
    more = _fit(prefix, 4, schedule="cosine")
    err = capsys.readouterr().err
    assert "resumed from" in err and "epochs 2 -> 4" in err
    assert more.epochs == [2, 3]
    steps = 4  # 64 images / 16
    # lr after the last update of epochs 3 and 4 of the new 4-epoch schedule (updates 12 and 16 of 16)
    assert more.history["lr"][0] == pytest.approx(_cosine(3 * steps, 0.1, 4 * steps), rel=1e-6)
    assert more.history["lr"][0] > 0.01
    record = checkpoint.read_checkpoint_record(prefix, 4)
    assert record.recipe["epochs"] == 4 and record.num_update == 16


def test_new_lr_on_resume_takes_effect(tmp_path, capsys):
    prefix = str(tmp_path / "m")
    _fit(prefix, 1)
    capsys.readouterr()
    more = _fit(prefix, 2, lr=0.3)
    assert "lr 0.1 -> 0.3" in capsys.readouterr().err
    assert more.history["lr"] == [pytest.approx(0.3)]  # step schedule, no decay before epoch 30


def test_resuming_another_model_is_refused(tmp_path):
    prefix = str(tmp_path / "m")
    x, y = quadrant_problem(32, size=16)
    fit(resnet18_v1_5(classes=4), ArrayBatches(x, y, 16), epochs=1, dtype="float32", callbacks=[Checkpoint(prefix)],
        progress=False)
    with pytest.raises(ValueError, match=r"trained as model='resnet18_v1_5' but this run has model='small'"):
        fit(_small(), ArrayBatches(x, y, 16), epochs=2, dtype="float32", callbacks=[Checkpoint(prefix)],
            progress=False)


def test_record_holds_the_format(tmp_path):
    prefix = str(tmp_path / "m")
    _fit(prefix, 1)
    with open(prefix + "-0001.json") as f:
        assert json.load(f)["schema_version"] == checkpoint.SCHEMA_VERSION
    record = checkpoint.read_checkpoint_record(prefix, 1)
    assert record.schema_version == checkpoint.SCHEMA_VERSION and record.extra == {}
    assert record.files == ("m-symbol.json", "m-0001.params", "m-0001.states")
    assert record.layout == "NCHW" and record.in_channels == 3 and record.classes == 4 and record.model == "small"
    assert record.dtype == "float32" and record.train_dtype == "float32"
    assert Recipe.from_dict(record.recipe) == Recipe(epochs=1, lr=0.1, warmup_epochs=0)
    assert record.batch_size == 16 and record.workers == 1 and record.steps_per_epoch == 4
    assert record.accumulate == 1 and record.num_update == 4 and record.epoch == 1 and record.step == 0


def test_resuming_with_another_accumulate_rebuilds_the_schedule(tmp_path, capsys):
    """1 epoch of 4 updates at batch 16, then with accumulate=2 (lr scaled per 256 images, cosine over
    3 epochs): epochs 2 and 3 have 2 updates of 32 images each, at twice the peak lr, from the position of epoch
    1 under the new settings (update 2)."""
    prefix = str(tmp_path / "m")
    first = _fit(prefix, 1, lr=None, lr_per_256=1.0)
    assert first.history["lr"] == [pytest.approx(16 / 256)]
    capsys.readouterr()
    more = _fit(prefix, 3, lr=None, lr_per_256=1.0, schedule="cosine", accumulate=2)
    err = capsys.readouterr().err
    assert "accumulate 1 -> 2" in err and "resumed from" in err and "(epoch 1, update 2)" in err
    record = checkpoint.read_checkpoint_record(prefix, 3)
    assert record.accumulate == 2 and record.steps_per_epoch == 4 and record.num_update == 6
    # cosine over 3 epochs x 2 updates from peak 32/256: after updates 4 and 6 of 6
    assert more.history["lr"] == [pytest.approx(_cosine(4, 32 / 256, 6)), pytest.approx(0.0, abs=1e-12)]


def test_interrupted_save_is_skipped_by_resume_predict_and_val(tmp_path, capsys):
    prefix = str(tmp_path / "m")
    x, y = quadrant_problem(64, size=16)
    fit(resnet18_v1_5(classes=4), ArrayBatches(x, y, 16), epochs=2, dtype="float32", lr=0.1, progress=False,
        callbacks=[Checkpoint(prefix, class_names=list("abcd"))])
    os.remove(prefix + "-0002.json")  # killed after .params and .states, before the record
    assert checkpoint.latest_checkpoint(prefix) == 1
    assert Predictor.from_checkpoint(prefix).class_names == list("abcd")  # epoch 1's record, not defaults
    net, epoch, _ = checkpoint.load_network(prefix)
    assert epoch == 1
    with pytest.raises(FileNotFoundError, match="m-0002.params' is incomplete"):
        Predictor.from_checkpoint(prefix, 2)
    capsys.readouterr()
    history = fit(resnet18_v1_5(classes=4), ArrayBatches(x, y, 16), epochs=2, dtype="float32", lr=0.1,
                  progress=False, callbacks=[Checkpoint(prefix)])
    assert history.epochs == [1] and "epoch 1" in capsys.readouterr().err
    # only a record with a file it lists missing: also incomplete
    os.remove(prefix + "-0002.states")
    assert checkpoint.latest_checkpoint(prefix) == 1


def test_first_save_interrupted_refuses_rather_than_guessing(tmp_path):
    prefix = str(tmp_path / "m")
    _fit(prefix, 1)
    os.remove(prefix + "-0001.json")
    with pytest.raises(FileNotFoundError, match="no complete checkpoint.*has no record"):
        Predictor.from_checkpoint(prefix)


def test_records_of_version_0_1_still_load(tmp_path):
    prefix = str(tmp_path / "m")
    _fit(prefix, 1)
    old = {k: v for k, v in checkpoint.read_checkpoint_record(prefix, 1).to_dict().items()
           if k in ("epoch", "model", "classes", "num_update", "loss_scale", "time", "metrics")}
    old["dtype"] = "float16"  # 0.1 wrote the training dtype here and no format/files/layout
    with open(prefix + "-0001.json", "w") as f:
        json.dump(old, f)
    assert checkpoint.latest_checkpoint(prefix) == 1
    record = checkpoint.read_checkpoint_record(prefix, 1)
    assert record.schema_version == 0 and record.dtype == "float32" and record.train_dtype == "float16"
    assert record.layout == "NCHW" and record.files == ("m-symbol.json", "m-0001.params", "m-0001.states")
    history = _fit(prefix, 2)
    assert history.epochs == [1]


def test_nhwc_layout_is_recorded_and_checked_on_reload(tmp_path):
    prefix = str(tmp_path / "m")
    net = _small()
    net.layout = "NHWC"  # stands in for an NHWC network, which MXNet cannot build on a CPU
    x, y = quadrant_problem(32, size=16)
    fit(net, ArrayBatches(x, y, 16), epochs=1, dtype="float32", callbacks=[Checkpoint(prefix)], progress=False)
    record = checkpoint.read_checkpoint_record(prefix, 1)
    assert record.layout == "NHWC"
    with open(prefix + "-0001.json", "w") as f:
        json.dump(dict(record.to_dict(), model="resnet18_v1_5"), f)
    if mx.context.num_gpus() == 0:
        with pytest.raises(ValueError, match="layout='NHWC' needs a GPU"):
            checkpoint.load_network(prefix)


def test_a_failed_export_leaves_nothing_behind(tmp_path):
    net = _small()
    net.initialize()
    net.hybridize()
    with pytest.raises(RuntimeError, match="run one forward pass after hybridize"):
        checkpoint.export_checkpoint(net, tmp_path / "m", 1)
    assert os.listdir(tmp_path) == []
    checkpoint.export_checkpoint(net, tmp_path / "m", 1, input_shape=(1, 3, 16, 16))
    assert sorted(os.listdir(tmp_path)) == ["m-0001.params", "m-symbol.json"]


def _step_pair(loss_scaling):
    net = gluon.nn.Dense(3, in_units=4)
    net.initialize(mx.init.Constant(0.1))
    trainer = Trainer(net.collect_params(), batch_size=2, steps_per_epoch=2, lr=0.1, warmup_epochs=0,
                      loss_scaling=loss_scaling)
    return net, trainer


def test_backward_scales_and_step_unscales():
    x, y = mx.nd.array([[1, 2, 3, 4], [0, 1, 0, 1]]), mx.nd.array([0, 2])
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    results = []
    for scaling in (False, True):
        net, trainer = _step_pair(scaling)
        with autograd.record():
            loss = loss_fn(net(x), y)
        trainer.backward(loss)
        results.append((net.weight.grad().asnumpy().copy(), trainer.loss_scale))
        trainer.step(2)
        results[-1] += (net.weight.data().asnumpy(),)
    (g_plain, s_plain, w_plain), (g_scaled, s_scaled, w_scaled) = results
    assert s_plain == 1.0 and s_scaled == 2.0 ** 16
    np.testing.assert_allclose(g_scaled, g_plain * s_scaled, rtol=1e-5)  # the scaler was used
    np.testing.assert_allclose(w_scaled, w_plain, rtol=1e-6)  # and divided out by step()


def test_empty_batch_step_and_saved_state_round_trip(tmp_path):
    net, trainer = _step_pair(True)
    before = net.weight.data().asnumpy().copy()
    with pytest.warns(UserWarning, match="averaged 0 images"):  # mid-epoch, where the lr assumes 2
        trainer.step(0)  # an empty batch: zero gradients, no stale-gradient error; only weight decay moves
    np.testing.assert_allclose(net.weight.data().asnumpy(), before * (1 - 0.1 * 1e-4), rtol=1e-6)
    trainer._amp_loss_scaler._loss_scale = 1024.0
    trainer.save_states(str(tmp_path / "t.states"))
    net2, trainer2 = _step_pair(True)
    trainer2.load_states(str(tmp_path / "t.states"))
    assert trainer2.loss_scale == 1024.0 and trainer2.num_update == 1


# ------------------------------------------------------------------------------------ the checkpoint record
# Records as resnet_gluon 0.1 wrote them (git history of callbacks.py, inference.py and checkpoint.py).
_V0_TRAINING = dict(epoch=3, model="resnet50_v1_5", classes=10, num_update=120, loss_scale=None, dtype="float16",
                    time=1.7e9, metrics={"loss": 1.5, "top1": 0.4}, class_names=["a", "b"],
                    preprocessing=dict(image_size=224, resize=256, mean=[0.0] * 3, std=[1.0] * 3))
_V0_PREDICTOR = dict(epoch=0, precision="int8", classes=10, class_names=["a", "b"],
                     preprocessing=dict(image_size=224, resize=256, mean=[0.0] * 3, std=[1.0] * 3))
_V1_TRAINING = dict(format=1, model="resnet50_v1_5", classes=10, layout="NCHW", in_channels=3, dtype="float32",
                    train_dtype="bfloat16", recipe={"epochs": 90}, batch_size=32, workers=2, steps_per_epoch=20,
                    num_update=40, loss_scale=None, metrics={"top1": 0.5}, epoch=2, step=0, time=1.7e9,
                    files=["m-symbol.json", "m-0002.params", "m-0002.states"])
_V1_OPENVINO = dict(format=1, dtype="int8", weights="ema", classes=10, class_names=["a"], preprocessing={},
                    layout="NCHW", model=None, backend="openvino", requested_dtype="int8", in_channels=3, epoch=0,
                    step=0, time=1.7e9, files=["m-0000.onnx"])


def test_record_round_trips_through_its_json(tmp_path):
    record = checkpoint.CheckpointRecord(model="resnet18_v1_5", classes=4, class_names=("x", "y", "z", "w"),
                                         metrics={"top1": 0.5}, ema={"decay": 0.9, "num_updates": 3},
                                         recipe={"epochs": 2}, batch_size=8, workers=1, accumulate=2,
                                         extra={"note": "kept"})
    data = json.loads(json.dumps(record.to_dict()))
    assert data["schema_version"] == checkpoint.SCHEMA_VERSION and "format" not in data and "meter" not in data
    assert checkpoint.CheckpointRecord.from_dict(data) == record
    path = checkpoint.write_checkpoint_record(tmp_path / "m", 5, record, step=7)
    assert path == str(tmp_path / "m-0005-000007.json")
    back = checkpoint.read_checkpoint_record(tmp_path / "m", 5, 7)
    assert back.files == ("m-symbol.json", "m-0005-000007.params") and back.epoch == 5 and back.step == 7
    assert back == dataclasses.replace(record, files=back.files, epoch=5, step=7, time=back.time) and back.time


@pytest.mark.parametrize("old, expected", [
    (_V0_TRAINING, dict(schema_version=0, dtype="float32", train_dtype="float16", layout="NCHW", in_channels=3,
                        files=("m-symbol.json", "m-0003.params", "m-0003.states"), num_update=120,
                        class_names=("a", "b"), accumulate=None)),
    (_V0_PREDICTOR, dict(schema_version=0, dtype="int8", train_dtype=None, model=None,
                         files=("m-symbol.json", "m-0003.params"))),
    (_V1_TRAINING, dict(schema_version=1, train_dtype="bfloat16", accumulate=1, workers=2, backend=None)),
    (_V1_OPENVINO, dict(schema_version=1, backend="openvino", requested_dtype="int8", weights="ema",
                        files=("m-0000.onnx",))),
], ids=["0.1-training-v0", "0.1-predictor-v0", "0.1-training-v1", "0.1-openvino-v1"])
def test_records_of_0_1_load_with_the_record_defaults(tmp_path, old, expected):
    with open(tmp_path / "m-0003.json", "w") as f:
        json.dump(old, f)
    record = checkpoint.read_checkpoint_record(tmp_path / "m", 3)
    assert {k: getattr(record, k) for k in expected} == expected
    assert record.extra == {}  # every field 0.1 wrote is a field of the record
    assert checkpoint.CheckpointRecord.from_dict(record.to_dict()) == dataclasses.replace(
        record, schema_version=checkpoint.SCHEMA_VERSION)


def test_a_record_of_a_newer_schema_is_a_one_line_error(tmp_path):
    with open(tmp_path / "m-0001.json", "w") as f:
        json.dump(dict(schema_version=checkpoint.SCHEMA_VERSION + 1, model="x"), f)
    with pytest.raises(ValueError) as err:
        checkpoint.read_checkpoint_record(tmp_path / "m", 1)
    message = str(err.value)
    assert "\n" not in message and "m-0001.json" in message and f"schema_version {checkpoint.SCHEMA_VERSION + 1}" \
        in message and "pip install --upgrade resnet_gluon" in message
    assert checkpoint.complete_epochs(tmp_path / "m") == []  # not taken for a checkpoint this release can read


def test_0_1_record_functions_warn_and_still_work(tmp_path):
    net = _small()
    with pytest.warns(DeprecationWarning, match="write_checkpoint_record"):
        checkpoint.write_record(tmp_path / "m", 1, dict(model="small", classes=4, num_update=3), states=True)
    with pytest.warns(DeprecationWarning, match="read_checkpoint_record"):
        old = checkpoint.read_record(tmp_path / "m", 1)
    assert old["files"] == ["m-symbol.json", "m-0001.params", "m-0001.states"] and old["num_update"] == 3
    with pytest.warns(DeprecationWarning, match="CheckpointRecord.for_network"):
        assert checkpoint.network_record(net) == dict(model="small", classes=4, layout="NCHW", in_channels=3)
    with pytest.warns(DeprecationWarning, match="SCHEMA_VERSION"):
        assert checkpoint.FORMAT == checkpoint.SCHEMA_VERSION
    record = checkpoint.read_checkpoint_record(tmp_path / "m", 1)
    with pytest.warns(DeprecationWarning, match="record.num_update"):
        assert record["num_update"] == 3 and record.get("num_update") == 3


def test_fit_records_the_pipelines_preprocessing_and_a_resume_says_what_crops_changed(tmp_path, capsys):
    from resnet_gluon import pipelines
    from resnet_gluon.data.preprocessing import Preprocessing

    prefix = str(tmp_path / "m")

    def run(epochs, **sizes):
        train, val = pipelines.imagenet(backend="synthetic", batch_size=4, classes=4, num_batches=2,
                                        preprocessing=Preprocessing.for_size(16, **sizes))
        fit(_small(), train, val, epochs=epochs, dtype="float32", progress=False, lr=0.1, warmup_epochs=0,
            callbacks=[Checkpoint(prefix)])   # given no preprocessing: it records the pipelines'
        return capsys.readouterr().err

    run(1, train_image_size=12)
    record = checkpoint.read_checkpoint_record(prefix, 1)
    assert (record.preprocessing["image_size"], record.preprocessing["resize"]) == (16, 18)
    assert record.preprocessing["train_image_size"] == 12
    assert Predictor.from_checkpoint(prefix).preprocessing.image_size == 16   # not the 224 px defaults
    assert "train_crop 12 -> 16" in run(2)   # resumed without the training size: said, not silent
    assert "all 2 epochs of this run are done: nothing to train" in run(2)


def test_a_checkpoint_without_preprocessing_warns_when_a_predictor_falls_back_to_224(tmp_path):
    prefix = str(tmp_path / "m")
    _fit(prefix, 1)   # ArrayBatches have no preprocessing, and the Checkpoint was given none
    assert checkpoint.read_checkpoint_record(prefix, 1).preprocessing is None
    with pytest.warns(UserWarning, match="records no preprocessing .* predicting at the 224 px defaults"):
        assert Predictor.from_checkpoint(prefix).preprocessing.image_size == 224
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)   # told the size: no warning
        assert Predictor.from_checkpoint(prefix, image_size=16).preprocessing.image_size == 16


def test_records_of_older_releases_resume_without_false_changes(tmp_path, capsys):
    """A record whose ``omitted`` list differs (a release that names more ingredients) or that holds 0.2's
    ``ema_warmup`` without ``ema_decay`` resumes; neither is a changed setting."""
    prefix = str(tmp_path / "m")
    _fit(prefix, 1)
    path = checkpoint.checkpoint_files(prefix, 1).record
    record = json.load(open(path))
    record["recipe"].update(omitted=["an ingredient an older release named"], ema_warmup=True, ema_decay=0.0)
    json.dump(record, open(path, "w"))
    assert Recipe.from_dict(record["recipe"]).ema_warmup is False
    capsys.readouterr()
    assert _fit(prefix, 2).epochs == [1]
    err = capsys.readouterr().err
    assert "epochs 1 -> 2" in err and "omitted" not in err and "ema_warmup" not in err

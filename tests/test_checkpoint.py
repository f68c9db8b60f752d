"""The checkpoint format: completeness, resume under a changed recipe, records, old records, the Trainer's state."""
import json
import os

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
    record = checkpoint.read_record(prefix, 4)
    assert record["recipe"]["epochs"] == 4 and record["num_update"] == 16


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
    record = checkpoint.read_record(prefix, 1)
    assert record["format"] == checkpoint.FORMAT
    assert record["files"] == ["m-symbol.json", "m-0001.params", "m-0001.states"]
    assert record["layout"] == "NCHW" and record["in_channels"] == 3 and record["classes"] == 4
    assert record["dtype"] == "float32" and record["train_dtype"] == "float32"
    assert Recipe.from_dict(record["recipe"]) == Recipe(epochs=1, lr=0.1, warmup_epochs=0)
    assert record["batch_size"] == 16 and record["workers"] == 1 and record["steps_per_epoch"] == 4
    assert record["accumulate"] == 1 and record["num_update"] == 4


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
    record = checkpoint.read_record(prefix, 3)
    assert record["accumulate"] == 2 and record["steps_per_epoch"] == 4 and record["num_update"] == 6
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
    old = {k: v for k, v in checkpoint.read_record(prefix, 1).items()
           if k in ("epoch", "model", "classes", "num_update", "loss_scale", "time", "metrics")}
    old["dtype"] = "float32"  # 0.1 wrote the training dtype here and no format/files/layout
    with open(prefix + "-0001.json", "w") as f:
        json.dump(old, f)
    assert checkpoint.latest_checkpoint(prefix) == 1
    record = checkpoint.read_record(prefix, 1)
    assert record["format"] == 0 and record["dtype"] == "float32" and record["layout"] == "NCHW"
    history = _fit(prefix, 2)
    assert history.epochs == [1]


def test_nhwc_layout_is_recorded_and_checked_on_reload(tmp_path):
    prefix = str(tmp_path / "m")
    net = _small()
    net.layout = "NHWC"  # stands in for an NHWC network, which MXNet cannot build on a CPU
    x, y = quadrant_problem(32, size=16)
    fit(net, ArrayBatches(x, y, 16), epochs=1, dtype="float32", callbacks=[Checkpoint(prefix)], progress=False)
    record = checkpoint.read_record(prefix, 1)
    assert record["layout"] == "NHWC"
    record["model"] = "resnet18_v1_5"
    with open(prefix + "-0001.json", "w") as f:
        json.dump(record, f)
    if mx.context.num_gpus() == 0:
        with pytest.raises(ValueError, match="layout='NHWC' needs a GPU"):
            checkpoint.load_network(prefix)


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

"""The moving average of the weights (resnet_gluon.train.ema): timm's rule, once per update in fit, evaluated beside the
raw weights, checkpointed, resumed exactly (also after kill -9), used by the Predictor."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import mxnet as mx
import numpy as np
import pytest

from helpers import REPO, ArrayBatches, horovodrun, jpeg, quadrant_problem, smooth_image
from resnet_gluon import Callback, Checkpoint, Recipe, Report, fit, load_parameters, resnet18_v1_5
from resnet_gluon.models import checkpoint
from resnet_gluon.models.blocks import BasicBlock, ResNet
from resnet_gluon.train.ema import EMA
from resnet_gluon.deploy.predictor import Predictor
from resnet_gluon.deploy.export import onnx_logits
from resnet_gluon.train.recipe import PRESETS
from resnet_gluon.train.stopping import TrainingStopped


def _closed_form(weights, decay, warmup):
    """e_k = sum_t (1 - d_t) prod_{s > t} d_s w_t, with d_1 = 0 and d_t = decay, or min(decay, 1 - t^(-2/3))."""
    k = len(weights)
    d = [0.0] + [min(decay, 1 - t ** (-2 / 3)) if warmup else decay for t in range(2, k + 1)]
    return sum((1 - d[t]) * np.prod(d[t + 1:]) * weights[t] for t in range(k))


@pytest.mark.parametrize("warmup", [False, True])
def test_average_after_k_updates_equals_the_closed_form(warmup):
    param = mx.gluon.Parameter("w", shape=(2, 3))
    param.initialize(mx.init.Zero(), ctx=mx.cpu())
    ema = EMA({"w": param}, decay=0.7, warmup=warmup)   # with warmup: 1 - t^(-2/3) passes 0.7 at t = 7 of 12
    rng = np.random.RandomState(0)
    weights = [rng.randn(2, 3).astype(np.float32) for _ in range(12)]
    for w in weights:
        param.set_data(mx.nd.array(w))
        ema.update()
    np.testing.assert_allclose(ema.averages["w"].asnumpy(), _closed_form(weights, 0.7, warmup), rtol=1e-5, atol=1e-6)
    assert ema.num_updates == 12 and ema.decay_at(1) == 0.0
    assert ema.decay_at(3) == pytest.approx(1 - 3 ** (-2 / 3) if warmup else 0.7)


def test_applied_swaps_the_averages_in_and_the_raw_weights_back_even_on_error():
    param = mx.gluon.Parameter("w", shape=(3,))
    param.initialize(mx.init.One(), ctx=mx.cpu())
    ema = EMA({"w": param}, decay=0.5)
    ema.update()                      # e = 1
    param.set_data(mx.nd.array([3, 3, 3]))
    ema.update()                      # e = 0.5 * 1 + 0.5 * 3
    with pytest.raises(KeyError):
        with ema.applied():
            np.testing.assert_array_equal(param.data().asnumpy(), [2, 2, 2])
            raise KeyError("inside")
    np.testing.assert_array_equal(param.data().asnumpy(), [3, 3, 3])


def test_bad_decays_are_one_line_errors():
    with pytest.raises(ValueError, match=r"ema_decay must be in \[0, 1\)"):
        Recipe(ema_decay=1.0)
    with pytest.raises(ValueError, match=r"EMA decay must be in \(0, 1\)"):
        EMA({}, decay=0.0)


def test_no_preset_averages_and_the_cli_flag_changes_only_it():
    from resnet_gluon.cli import _parser, _recipe

    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert all(Recipe.preset(name).ema_decay == 0 for name in PRESETS)
        a3 = _recipe(_parser().parse_args(["train", "--recipe", "rsb_a3", "--ema-decay", "0.9998", "--ema-warmup"]))
        assert Recipe.rsb_a3().differences(a3) == {"ema_decay": (0.0, 0.9998), "ema_warmup": (False, True)}


class _Keep(Callback):
    def on_train_end(self, logs):
        type(self).state = self.state


def _tiny():
    mx.random.seed(7)
    return ResNet(BasicBlock, (1,), classes=4, stem_channels=8)


def test_fit_averages_once_per_update_validates_the_average_and_checkpoints_it(tmp_path):
    x, y = quadrant_problem(64, size=16)
    vx, vy = quadrant_problem(16, size=16, seed=3)
    prefix = str(tmp_path / "m")
    net = _tiny()
    history = fit(net, ArrayBatches(x, y, 8), ArrayBatches(vx, vy, 8), epochs=2, lr=0.1, warmup_epochs=0,
                  accumulate=2, ema_decay=0.6, progress=False, dtype="float32",
                  callbacks=[Checkpoint(prefix), Report(prefix + "-report.json", plot=False), _Keep()])
    state = _Keep.state
    assert state.ema.num_updates == state.trainer.num_update == 8     # 8 batches x 2 epochs / accumulate 2
    report = json.load(open(prefix + "-report.json"))["metrics"]
    for key in ("top1", "top5", "loss"):
        assert report[f"val.{key}_ema"] == history.history[f"val_{key}_ema"]
        assert len(history.history[f"val_{key}_ema"]) == 2
    assert history.summary()["val_top1_ema"] == history.history["val_top1_ema"][-1]   # what `train` prints
    record = checkpoint.read_checkpoint_record(prefix, 2)
    assert record.ema["num_updates"] == 8 and record.ema["decay"] == 0.6
    assert os.path.basename(checkpoint.checkpoint_files(prefix, 2).ema) in record.files
    saved = mx.nd.load(checkpoint.checkpoint_files(prefix, 2).ema)
    keys = checkpoint.params_keys(net)
    for name, avg in state.ema.averages.items():
        np.testing.assert_array_equal(saved[keys[name]].asnumpy(), avg.asnumpy())
    # the raw weights are back after validation, and the validated figures are those of the averages
    raw = mx.nd.load(checkpoint.checkpoint_files(prefix, 2).params)
    for name, param in net.collect_params().items():
        np.testing.assert_array_equal(param.data().asnumpy(), raw[keys[name]].asnumpy())
    with state.ema.applied():
        from resnet_gluon import evaluate
        again = evaluate(net, ArrayBatches(vx, vy, 8), ctx=mx.cpu())
    assert again["val_loss"] == pytest.approx(history.history["val_loss_ema"][-1], rel=1e-6)
    assert history.history["val_loss_ema"][-1] != history.history["val_loss"][-1]


def test_predictor_uses_the_average_unless_told_not_to(tmp_path):
    x, y = quadrant_problem(32, size=16)
    prefix = str(tmp_path / "r18")
    mx.random.seed(1)
    fit(resnet18_v1_5(classes=4), ArrayBatches(x, y, 8), epochs=1, lr=0.1, warmup_epochs=0, ema_decay=0.5,
        progress=False, dtype="float32", callbacks=[Checkpoint(prefix)])
    files = checkpoint.checkpoint_files(prefix, 1)
    batch = x[:4].astype(np.float32)
    outputs = {}
    for ema, weights, path in ((True, "ema", files.ema), (False, "raw", files.params)):
        predictor = Predictor.from_checkpoint(prefix, image_size=16, ema=ema)
        assert predictor.weights == weights
        net = load_parameters(resnet18_v1_5(classes=4), path, ctx=mx.cpu())
        expected = net(mx.nd.array(batch)).asnumpy()
        outputs[weights] = predictor.logits(batch)
        np.testing.assert_allclose(outputs[weights], expected, rtol=1e-4, atol=1e-4)
    assert np.abs(outputs["ema"] - outputs["raw"]).max() > 1e-3   # the two really differ
    predictor = Predictor.from_checkpoint(prefix, image_size=16)
    assert "weights='ema'" in repr(predictor)
    onnx = predictor.export_onnx(str(tmp_path / "r18.onnx"))     # the export carries the averaged weights
    np.testing.assert_allclose(onnx_logits(onnx, batch), outputs["ema"], rtol=1e-4, atol=1e-4)
    saved = str(tmp_path / "saved")
    predictor.save(saved)   # a saved predictor of the average holds no raw weights: ema=False is refused
    assert Predictor.from_checkpoint(saved).weights == "ema"
    with pytest.raises(ValueError, match="is a saved predictor of the moving average .* training checkpoint"):
        Predictor.from_checkpoint(saved, ema=False)
    openvino = Predictor.from_checkpoint(prefix, image_size=16, backend="openvino")
    assert openvino.weights == "ema"
    openvino.save(str(tmp_path / "saved_ov"))   # reloaded as saved: still the average, and said so
    assert Predictor.from_checkpoint(str(tmp_path / "saved_ov")).weights == "ema"
    image = tmp_path / "a.jpg"
    image.write_bytes(jpeg(smooth_image(np.random.RandomState(0), 16, 16)))
    for flags, line in (([], "weights: the moving average saved with the checkpoint"), (["--no-ema"], "weights: raw")):
        command = ["predict", "--model-prefix", prefix, "--image-size", "16", str(image), *flags]
        proc = subprocess.run([sys.executable, "-m", "resnet_gluon", *command], capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0 and line in proc.stderr, proc.stderr[-2000:]


def test_a_mid_epoch_stop_saves_the_average_and_the_resume_equals_the_uninterrupted_run(tmp_path):
    x, y = quadrant_problem(64, size=16)

    def run(prefix, callbacks=()):
        _Keep.state = None
        fit(_tiny(), ArrayBatches(x, y, 8), epochs=2, lr=0.1, warmup_epochs=0, ema_decay=0.8, ema_warmup=True,
            progress=False, dtype="float32", read_every=2, callbacks=[Checkpoint(prefix), *callbacks, _Keep()])
        return _Keep.state.ema

    reference = run(str(tmp_path / "ref" / "m"))

    class StopAt(Callback):
        def on_batch_end(self, batch, logs):
            if self.state.epoch == 1 and batch == 1:
                signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)

    prefix = str(tmp_path / "run" / "m")
    with pytest.raises(TrainingStopped) as stopped:
        run(prefix, [StopAt()])
    mid = checkpoint.checkpoint_files(prefix, 1, stopped.value.step)
    assert os.path.basename(mid.ema) in checkpoint.read_checkpoint_record(prefix, 1, stopped.value.step).files
    assert checkpoint.read_checkpoint_record(prefix, 1, stopped.value.step).ema["num_updates"] == 8 + stopped.value.step
    resumed = run(prefix)
    assert resumed.num_updates == reference.num_updates == 16
    for a, b in zip(reference.averages.values(), resumed.averages.values()):
        np.testing.assert_array_equal(b.asnumpy(), a.asnumpy())
    assert not os.path.exists(mid.ema)   # pruned with its mid-epoch checkpoint


def _script(prefix, epochs, delay=0.0):
    return subprocess.Popen([sys.executable, os.path.join(REPO, "tests", "scripts", "train_ema.py"), prefix,
                             str(epochs), str(delay)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_the_average_survives_sigkill_and_resumes_equal_to_the_uninterrupted_run(tmp_path):
    ref = _script(str(tmp_path / "ref" / "m"), 3)
    assert ref.wait(timeout=300) == 0, ref.communicate()[1][-3000:]
    prefix = str(tmp_path / "run" / "m")
    victim = _script(prefix, 3, delay=0.2)
    deadline = time.time() + 300
    while checkpoint.latest_checkpoint(prefix) != 1:   # epoch 1's checkpoint, then into epoch 2
        assert time.time() < deadline and victim.poll() is None, victim.communicate()[1][-3000:]
        time.sleep(0.05)
    time.sleep(0.5)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert checkpoint.latest_checkpoint(prefix) == 1
    resumed = _script(prefix, 3)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0 and "resumed from" in err, err[-3000:]
    final_ref = mx.nd.load(checkpoint.checkpoint_files(str(tmp_path / "ref" / "m"), 3).ema)
    final = mx.nd.load(checkpoint.checkpoint_files(prefix, 3).ema)
    assert len(final) == len(final_ref) > 0
    for (name, a), b in zip(sorted(final_ref.items()), [v for _, v in sorted(final.items())]):
        np.testing.assert_allclose(b.asnumpy(), a.asnumpy(), rtol=1e-6, atol=1e-7, err_msg=name)
    assert checkpoint.read_checkpoint_record(prefix, 3).ema["num_updates"] == 24
    assert len(json.load(open(prefix + "-report.json"))["metrics"]["val.top1_ema"]) == 3


@pytest.mark.parametrize("optimizer", [dict(optimizer="sgd", momentum=0.9), dict(optimizer="adam")])
def test_float16_weights_are_averaged_from_the_optimizers_float32_master_copy(optimizer):
    # SGD keeps (momentum, master copy), Adam (through MXNet's base class) (master copy, (mean, var))
    param = mx.gluon.Parameter("w16", shape=(4,), dtype="float16", init=mx.init.One())
    param.initialize(ctx=mx.cpu())
    options = dict(optimizer)
    trainer = mx.gluon.Trainer({"w16": param}, options.pop("optimizer"),
                               dict(options, learning_rate=1e-4, multi_precision=True))
    ema = EMA({"w16": param}, decay=0.5, trainer=trainer)
    with mx.autograd.record():
        loss = param.data().sum()                       # gradient 1 for every element
    loss.backward()
    trainer.step(1)                                     # master copy 0.9999; in float16 that rounds back to 1.0
    assert (param.data().asnumpy() == 1).all()
    ema.update()                                        # the first update copies: the master copy, not 1.0
    assert ema.averages["w16"].dtype == np.float32
    np.testing.assert_allclose(ema.averages["w16"].asnumpy(), np.float32(1 - 1e-4), rtol=0, atol=2e-7)


@pytest.mark.slow
@pytest.mark.distributed
def test_two_workers_average_alike_and_a_resume_broadcasts_rank_0s_average(tmp_path):
    """Each worker averages its own (identical) weights; a resumed run gives rank 1 rank 0's averages; both equal
    one worker's averages at the same global batch."""
    script = os.path.join(REPO, "tests", "scripts", "train_ema.py")
    single = subprocess.run([sys.executable, script, str(tmp_path / "one" / "m"), "3", "0", "plain"],
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    horovodrun(2, script, str(tmp_path / "two" / "m"), "2", "0", "plain", timeout=300)
    resumed = horovodrun(2, script, str(tmp_path / "two" / "m"), "3", "0", "plain", timeout=300)
    assert "resumed from" in resumed.stdout + resumed.stderr
    one = mx.nd.load(str(tmp_path / "one" / "m-averages-rank0.params"))
    two = [mx.nd.load(str(tmp_path / "two" / f"m-averages-rank{r}.params")) for r in range(2)]
    assert len(one) == len(two[0]) == len(two[1]) > 0
    for key, value in one.items():
        np.testing.assert_array_equal(two[1][key].asnumpy(), two[0][key].asnumpy(), err_msg=key)
        np.testing.assert_allclose(two[0][key].asnumpy(), value.asnumpy(), rtol=1e-5, atol=1e-6, err_msg=key)
    assert checkpoint.read_checkpoint_record(str(tmp_path / "two" / "m"), 3).ema["num_updates"] == 24


def test_turning_the_average_on_or_off_on_resume(tmp_path, capsys):
    x, y = quadrant_problem(32, size=16)
    prefix = str(tmp_path / "m")

    def run(epochs, **ema):
        fit(_tiny(), ArrayBatches(x, y, 8), epochs=epochs, lr=0.1, warmup_epochs=0, progress=False, dtype="float32",
            callbacks=[Checkpoint(prefix), _Keep()], **ema)
        return _Keep.state.ema

    assert run(1) is None and checkpoint.read_checkpoint_record(prefix, 1).ema is None
    ema = run(2, ema_decay=0.9)            # on: it starts from the resumed weights and counts its own updates
    assert "no weight average: it starts from the resumed weights" in capsys.readouterr().err
    assert ema.num_updates == 4 and checkpoint.read_checkpoint_record(prefix, 2).ema["num_updates"] == 4
    assert run(3) is None                  # off again: the checkpoint has no average, the change is named
    assert "ema_decay 0.9 -> 0.0" in capsys.readouterr().err
    record = checkpoint.read_checkpoint_record(prefix, 3)
    assert record.ema is None and not any("-ema" in f for f in record.files)
    assert checkpoint.weights_used(record) == "raw"
    assert checkpoint.weights_used(checkpoint.read_checkpoint_record(prefix, 2)) == "ema"
    assert checkpoint.weights_used(checkpoint.read_checkpoint_record(prefix, 2), ema=False) == "raw"

"""Device (context) handling without a GPU: ``mx.cpu(1)`` stands in for a second device.

Each case failed before the fix with a context mismatch or a wrong device; the ``gpu``-marked tests run the
real paths wherever mxnet finds a GPU.
"""
import json
import os

import mxnet as mx
import numpy as np
import pytest

from helpers import ArrayBatches, make_records, quadrant_problem
from resnet_gluon import Checkpoint, Predictor, Preprocessing, cli, fit, resnet18_v1_5
from resnet_gluon._core import amp, runtime
from resnet_gluon.models.blocks import BasicBlock, ResNet

STAND_IN = mx.cpu(1)
HERE = os.path.dirname(os.path.abspath(__file__))


def _contexts(net):
    return {c for p in net.collect_params().values() for c in p.list_ctx()}


def test_predictor_moves_a_given_net_to_its_context():
    net = ResNet(BasicBlock, (1,), classes=3, stem_channels=8)
    net.initialize(ctx=mx.cpu(0))
    predictor = Predictor(net, ctx=STAND_IN, preprocessing=Preprocessing(image_size=32, resize=36))
    assert _contexts(net) == {STAND_IN}
    probs = predictor.probabilities([np.zeros((40, 40, 3), np.uint8)])
    assert probs.shape == (1, 3) and np.isclose(probs.sum(), 1.0, atol=1e-5)


def test_fit_and_validation_run_on_the_given_device():
    x, y = quadrant_problem(32, size=16)
    net = ResNet(BasicBlock, (1,), classes=4, stem_channels=8)
    net.initialize(ctx=mx.cpu(0))  # fit moves it
    history = fit(net, ArrayBatches(x, y, 16), ArrayBatches(x, y, 16), epochs=1, dtype="float32",
                  ctx=STAND_IN, progress=False, read_every=1)
    assert _contexts(net) == {STAND_IN}
    assert history.history["val_num_images"] == [32]


def test_train_mode_val_loads_weights_on_the_workers_device(tmp_path, monkeypatch, capsys):
    make_records(tmp_path / "data" / "train", 16, classes=3, size=(36, 36))
    make_records(tmp_path / "data" / "val", 8, classes=3, size=(36, 36), seed=1)
    prefix = str(tmp_path / "m")
    x, y = quadrant_problem(16, size=32, classes=3)
    fit(resnet18_v1_5(classes=3), ArrayBatches(x, y, 8), epochs=1, dtype="float32", progress=False,
        callbacks=[Checkpoint(prefix)])
    monkeypatch.setattr(runtime, "default_context", lambda: STAND_IN)
    code = cli.main(["train", "--mode", "val", "--data-root", str(tmp_path / "data"), "--model-prefix", prefix,
                     "--arch", "resnet18_v1_5", "--image-size", "32", "-b", "4", "--data-threads", "1"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["epoch"] == 1 and out["val_num_images"] == 8


def test_bfloat16_is_refused_on_a_gpu_context():
    with pytest.raises(ValueError, match="bfloat16 runs on CPUs only"):
        amp.resolve_dtype("bfloat16", mx.gpu(0))
    with pytest.raises(ValueError, match="int8 runs on CPUs only"):
        amp.resolve_dtype("int8", mx.gpu(0), inference=True)
    with pytest.raises(ValueError, match="int8 is for inference only"):
        amp.resolve_dtype("int8", mx.cpu())
    assert amp.resolve_dtype("auto", mx.gpu(0)) in ("float16", amp.initialized_dtype())


@pytest.mark.gpu
def test_float16_fit_and_predictor_on_a_gpu(tmp_path):
    import subprocess
    import sys

    script = f"""
import mxnet as mx, numpy as np, sys
sys.path.insert(0, {repr(HERE)})
from helpers import ArrayBatches, quadrant_problem
from resnet_gluon import Checkpoint, Predictor, fit, resnet18_v1_5
x, y = quadrant_problem(64, size=32)
h = fit(resnet18_v1_5(classes=4), ArrayBatches(x, y, 16), epochs=2, dtype='float16', ctx=mx.gpu(0),
        progress=False, callbacks=[Checkpoint({repr(str(tmp_path / 'm'))})])
assert h.history['loss_scale'][-1] > 1
p = Predictor.from_checkpoint({repr(str(tmp_path / 'm'))}, ctx=mx.gpu(0), dtype='float16', image_size=32)
# a float16-AMP checkpoint's weights are float32: it reloads on a CPU through the record (not the fp16 symbol)
from resnet_gluon import checkpoint
cpu_net, _, record = checkpoint.load_network({repr(str(tmp_path / 'm'))}, ctx=mx.cpu())
assert record.train_dtype == 'float16' and record.dtype == 'float32'
assert cpu_net(mx.nd.array(x[:2])).shape == (2, 4)
print('OK', p.logits(x[:4]).shape)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "OK (4, 4)" in proc.stdout, proc.stderr[-3000:]


def test_two_processes_on_a_one_gpu_machine_get_a_clear_error(monkeypatch):
    """`train -n 2` on one GPU: rank 1 used to fail deep in CUDA with an invalid device ordinal."""
    from resnet_gluon._core import dist

    monkeypatch.setattr(runtime, "num_gpus", lambda: 1)
    monkeypatch.setattr(dist, "local_rank", lambda: 1)
    monkeypatch.setattr(dist, "local_size", lambda: 2)
    with pytest.raises(ValueError, match=r"local rank 1 has no GPU: this machine has 1 GPU\(s\) but 2 processes"):
        runtime.default_context()
    monkeypatch.setattr(dist, "local_rank", lambda: 0)
    assert runtime.default_context() == mx.gpu(0)


def test_pad_output_gives_four_channels_for_a_four_channel_stem(tmp_path):
    """The reference's GPU input: DALI pads RGB to 4 channels (zero); the stem takes in_channels=4."""
    from resnet_gluon.data import pipelines
    from resnet_gluon.data.preprocessing import preprocess

    make_records(tmp_path / "train", 16, classes=3, size=(40, 40))
    prep = Preprocessing(image_size=32, resize=36, pad_output=True)
    data = pipelines.DALIPipeline(str(tmp_path / "train.rec"), batch_size=8, train=False, preprocessing=prep,
                                  num_shards=1, shard_id=0, num_threads=1)
    x, y = next(iter(data))
    assert x.shape == (8, 4, 32, 32) and float(abs(x[:, 3]).max().asscalar()) == 0.0
    plain = pipelines.DALIPipeline(str(tmp_path / "train.rec"), batch_size=8, train=False, num_shards=1, shard_id=0,
                                   preprocessing=Preprocessing(image_size=32, resize=36), num_threads=1)
    np.testing.assert_array_equal(x[:, :3].asnumpy(), next(iter(plain))[0].asnumpy())
    assert preprocess([np.zeros((40, 40, 3), np.uint8)], prep).shape == (1, 4, 32, 32)
    net = resnet18_v1_5(classes=3, in_channels=4)
    history = fit(net, data, epochs=1, dtype="float32", lr=0.01, progress=False)
    assert history.history["num_images"] == [16]

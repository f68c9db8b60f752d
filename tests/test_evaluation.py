"""evaluate(): the latency of a batch is the time until its result exists, not the time to dispatch it."""
import time

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from resnet_gluon.evaluation import describe, evaluate

SLOW_SECONDS = 0.6


class _SlowOnMarker(mx.operator.CustomOp):
    """Identity that sleeps when the batch's first value is the marker: work MXNet runs asynchronously, after the
    Python call has returned."""

    def forward(self, is_train, req, in_data, out_data, aux):
        if float(in_data[0][0, 0, 0, 0].asscalar()) >= 1000:
            time.sleep(SLOW_SECONDS)
        self.assign(out_data[0], req[0], in_data[0])

    def backward(self, req, out_grad, in_data, out_data, in_grad, aux):
        self.assign(in_grad[0], req[0], out_grad[0])


@mx.operator.register("rg_slow_on_marker")
class _SlowOnMarkerProp(mx.operator.CustomOpProp):
    def list_arguments(self):
        return ["data"]

    def infer_shape(self, in_shape):
        return in_shape, [in_shape[0]], []

    def create_operator(self, ctx, shapes, dtypes):
        return _SlowOnMarker()


class _Net(gluon.Block):
    def __init__(self):
        super().__init__()
        self.classes = 3
        self.dense = gluon.nn.Dense(3, in_units=3)

    def forward(self, x):
        x = mx.nd.Custom(x, op_type="rg_slow_on_marker")
        return self.dense(mx.nd.mean(x, axis=(2, 3)))


def test_a_slow_batch_shows_up_in_latency_100():
    net = _Net()
    net.initialize()
    rng = np.random.RandomState(0)
    batches = []
    for i in range(9):
        x = rng.rand(4, 3, 8, 8).astype(np.float32)
        if i == 4:
            x[0, 0, 0, 0] = 1000  # this batch takes SLOW_SECONDS longer
        batches.append((mx.nd.array(x), mx.nd.array(rng.randint(0, 3, 4))))
    logs = evaluate(net, batches, ctx=mx.cpu(), prefix="")
    assert logs["num_images"] == 36
    assert logs["latency_100"] >= SLOW_SECONDS, logs
    assert logs["latency_50"] < SLOW_SECONDS / 3, logs
    # 1 slow batch in 9: the mean holds it once
    assert logs["latency_avg"] == pytest.approx(np.mean([logs["latency_100"]] + [logs["latency_50"]] * 8), abs=0.1)


def test_describe_names_the_engine_and_the_isa():
    figures = dict(num_images=16, top1=0.5, top5=None, total_ips=10.0, latency_50=0.01, latency_99=0.02,
                   backend="openvino", cpu_isa="avx2")
    assert describe(figures, dtype="int8") == ("16 images, int8 (openvino): top-1 0.5000, top-5 n/a, 10.0 img/s, "
                                               "latency per batch p50 10.0 ms, p99 20.0 ms, CPU ISA avx2")


def test_evaluate_and_predictor_evaluate_return_one_set_of_keys(tmp_path):
    from helpers import make_records
    from resnet_gluon import Predictor, resnet18_v1_5
    from resnet_gluon.data.preprocessing import Preprocessing
    from resnet_gluon.evaluation import METRICS

    files, items = make_records(tmp_path / "val", 6, classes=3, size=(36, 36))
    net = resnet18_v1_5(classes=3)
    net.initialize()
    predictor = Predictor(net, preprocessing=Preprocessing.for_size(32), batch_size=4)
    out = predictor.evaluate(files.rec, data_backend="mxnet")
    assert set(out) == set(METRICS) | {"dtype", "backend", "weights", "rec", "batch_size", "cpu_isa"}, sorted(out)
    assert out["num_images"] == 6 and out["top5"] is None and out["loss"] > 0
    batches = [(mx.nd.zeros((2, 3, 32, 32)), mx.nd.array([0, 1]))]
    assert set(evaluate(net, batches, ctx=mx.cpu())) == {f"val_{k}" for k in METRICS}

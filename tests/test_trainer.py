import math

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from resnet_gluon.trainer import Trainer, lr_scheduler, reference_lr


def _rule(t, base, spe, warmup_epochs=5, steps=(30, 60, 80)):
    warm = warmup_epochs * spe
    if t < warm:
        return base * t / warm
    return base * 0.1 ** sum(t > e * spe for e in steps)


@pytest.mark.parametrize("global_batch,spe", [(32, 7), (256, 5), (1024, 3)])
def test_reference_schedule_every_iteration(global_batch, spe):
    base = reference_lr(global_batch)
    assert base == pytest.approx(0.1 * global_batch / 256)
    sched = lr_scheduler(base_lr=base, steps_per_epoch=spe, epochs=90)
    for t in range(1, 90 * spe + 1):
        assert sched(t) == pytest.approx(_rule(t, base, spe), rel=1e-9, abs=1e-12), t


def test_cosine_option():
    sched = lr_scheduler(base_lr=0.256, steps_per_epoch=10, epochs=50, schedule="cosine", warmup_epochs=5)
    assert sched(25) == pytest.approx(0.256 * 25 / 50)
    mid = 50 + (500 - 50) // 2
    assert sched(mid) == pytest.approx(0.128, rel=1e-3)
    assert sched(500) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="unknown lr schedule 'linear'"):
        lr_scheduler(base_lr=0.1, steps_per_epoch=1, schedule="linear")


def _tiny():
    net = gluon.nn.Dense(3, in_units=4)
    net.initialize(mx.init.Constant(0.1))
    return net


def test_trainer_defaults_follow_recipe_and_scale_with_batch():
    net = _tiny()
    trainer = Trainer(net.collect_params(), batch_size=64, steps_per_epoch=10)
    assert trainer.base_lr == pytest.approx(0.1 * 64 / 256)
    assert trainer._optimizer.momentum == 0.9 and trainer._optimizer.wd == 1e-4
    x, y = mx.nd.ones((2, 4)), mx.nd.array([0, 1])
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    for t in range(1, 4):
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(2)
        assert trainer.num_update == t
    # the next update uses warmup lr for t = 4
    assert trainer.learning_rate == pytest.approx(_rule(3, 0.025, 10))


def test_no_wd_on_bn_and_bias():
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Dense(3, in_units=4), gluon.nn.BatchNorm(in_channels=3))
    net.initialize()
    Trainer(net.collect_params(), batch_size=4, steps_per_epoch=1, no_wd_bn_bias=True)
    mults = {name.rsplit("_", 1)[-1]: p.wd_mult for name, p in net.collect_params().items()}
    assert mults["weight"] == 1.0 and mults["bias"] == 0.0 and mults["gamma"] == 0.0 and mults["beta"] == 0.0


def test_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        Trainer(_tiny().collect_params(), batch_size=0, steps_per_epoch=1)


def test_overflow_skips_update_and_lowers_scale():
    net = _tiny()
    trainer = Trainer(net.collect_params(), batch_size=2, steps_per_epoch=1, lr=0.1, warmup_epochs=0,
                      loss_scaling=True)
    scale0 = trainer.loss_scale
    assert scale0 == 2.0 ** 16
    x, y = mx.nd.ones((2, 4)), mx.nd.array([0, 1])
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    from resnet_gluon import amp

    def backward(inject_inf):
        with autograd.record():
            loss = loss_fn(net(x), y)
            with amp.scale_loss(loss, trainer) as scaled:
                autograd.backward(scaled)
        if inject_inf:
            net.weight.grad()[0, 0] = np.inf

    before = net.weight.data().copy()
    backward(inject_inf=True)
    trainer.step(2)
    np.testing.assert_array_equal(net.weight.data().asnumpy(), before.asnumpy())  # update skipped
    backward(inject_inf=False)
    trainer.step(2)
    assert trainer.loss_scale == scale0 / 2
    assert not np.allclose(net.weight.data().asnumpy(), before.asnumpy())  # finite step applied
    assert np.isfinite(net.weight.data().asnumpy()).all()

import warnings

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from resnet_gluon.train.recipe import Recipe, reference_lr
from resnet_gluon.train.trainer import Trainer, lr_scheduler


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
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            trainer.step(2)
        # batches of 2 where the lr is scaled for 64: said at the first step only
        assert [str(w.message)[:59] for w in seen] == ["the update after batch 1 of epoch 1 averaged 2 images over "] * (t == 1)
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
    with pytest.raises(ValueError, match="accumulate must be >= 1, got 0"):
        Trainer(_tiny().collect_params(), batch_size=2, steps_per_epoch=1, accumulate=0)


def test_overflow_skips_update_and_lowers_scale():
    net = _tiny()
    trainer = Trainer(net.collect_params(), batch_size=2, steps_per_epoch=1, lr=0.1, warmup_epochs=0,
                      loss_scaling=True)
    scale0 = trainer.loss_scale
    assert scale0 == 2.0 ** 16
    x, y = mx.nd.ones((2, 4)), mx.nd.array([0, 1])
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    from resnet_gluon._core import amp

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


def test_poly_schedule_is_mlperfs():
    base, spe, epochs, warmup, end = 10.5, 7, 5, 2, 1e-4
    sched = lr_scheduler(base_lr=base, steps_per_epoch=spe, epochs=epochs, schedule="poly", warmup_epochs=warmup,
                         final_lr=end, poly_power=2)
    total, w = epochs * spe, warmup * spe
    for t in range(1, total + 1):  # MLPerf v0.7 NVIDIA common/fit.py PolySchedule
        expected = base * t / w if t <= w else end + (base - end) * (1 - (t - w) / (total - w)) ** 2
        assert sched(t) == pytest.approx(expected, rel=1e-9, abs=1e-12), t
    assert sched(total) == pytest.approx(end)


def test_optimizer_choice_and_unknown_names():
    from resnet_gluon.train.optimizers import LAMB

    params = _tiny().collect_params()
    assert isinstance(Trainer(params, batch_size=2, steps_per_epoch=1, optimizer="lamb")._optimizer, LAMB)
    plain = Trainer(_tiny().collect_params(), batch_size=2, steps_per_epoch=1, optimizer="lamb",
                    trust_ratio_bn_bias=True)._optimizer
    assert type(plain) is mx.optimizer.LAMB and not plain.idx2name
    lars = Trainer(_tiny().collect_params(), batch_size=2, steps_per_epoch=1, optimizer="lars", lars_eta=0.02)
    assert lars._optimizer.eta == 0.02 and lars._optimizer.momentum == 0.9
    assert sorted(lars._optimizer.idx2name.values()) == sorted(p.name for p in lars._params)
    with pytest.raises(ValueError, match="unknown optimizer 'lasr'; MXNet knows: .*lars"):
        Trainer(_tiny().collect_params(), batch_size=2, steps_per_epoch=1, optimizer="lasr")


def test_preset_lr_for_another_batch_warns():
    with pytest.warns(UserWarning, match="sets lr 10.5 for a global batch of 3264 images; this run's is 2"):
        Trainer(_tiny().collect_params(), batch_size=2, steps_per_epoch=1, recipe=Recipe(lr=10.5, batch_size=3264))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlperf = Recipe.mlperf()
    with pytest.warns(UserWarning, match="recipe 'mlperf' sets lr 10.5 for a global batch of 3264 images"):
        Trainer(_tiny().collect_params(), batch_size=2, steps_per_epoch=1, recipe=mlperf)
    with warnings.catch_warnings():  # an lr of the user's own (--recipe mlperf --lr 0.5): no word about 3264
        warnings.simplefilter("error", UserWarning)
        Trainer(_tiny().collect_params(), batch_size=2, steps_per_epoch=1, recipe=mlperf.replace(lr=0.5))


def test_no_weight_decay_on_bn_and_bias_is_undone_by_a_trainer_whose_recipe_decays_them():
    net = _tiny()
    params = net.collect_params()
    params[next(k for k in params.keys() if k.endswith("bias"))].wd_mult = 0.5  # a user's own setting comes back
    own = {name: p.wd_mult for name, p in params.items()}
    Trainer(params, batch_size=2, steps_per_epoch=1, no_wd_bn_bias=True)
    excluded = {name for name, p in params.items() if p.wd_mult == 0.0}
    assert excluded == {name for name in params.keys() if name.endswith(("gamma", "beta", "bias"))} and excluded
    Trainer(params, batch_size=2, steps_per_epoch=1)  # the reference recipe decays every parameter
    assert {name: p.wd_mult for name, p in params.items()} == own and 0.5 in own.values()


def _batches(n, seed=0):
    rng = np.random.RandomState(seed)
    return [(mx.nd.array(rng.normal(size=(2, 4))), mx.nd.array(rng.randint(0, 3, 2))) for _ in range(n)]


def test_accumulated_update_is_the_exact_mean_and_scaling_checks_overflow_once_per_update():
    """accumulate=2: one SGD update per 2 batches, with the mean gradient of their 4 images (computed here on
    the 4 images at once), the same with loss scaling on; the loss scaler checks the accumulated gradients once
    per update, and an inf in the first batch skips the whole update."""
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    batches = _batches(4)
    probe = _tiny()
    with autograd.record():
        loss = loss_fn(probe(mx.nd.concat(batches[0][0], batches[1][0], dim=0)),
                       mx.nd.concat(batches[0][1], batches[1][1], dim=0))
    loss.backward()
    w0 = probe.weight.data().asnumpy()
    expected = w0 - 0.1 * (probe.weight.grad().asnumpy() / 4 + 1e-4 * w0)  # SGD's first step: no momentum yet
    for scaling in (False, True):
        net = _tiny()
        trainer = Trainer(net.collect_params(), batch_size=2, steps_per_epoch=4, accumulate=2, lr=0.1,
                          warmup_epochs=0, loss_scaling=scaling)
        checks = []
        if scaling:
            scaler = trainer._amp_loss_scaler
            scaler.has_overflow = lambda params, check=scaler.has_overflow: checks.append(1) or check(params)
        for i, (x, y) in enumerate(batches[:2]):
            with autograd.record():
                loss = loss_fn(net(x), y)
            trainer.backward(loss)
            trainer.step(2)
            assert trainer.num_update == i  # no update after the first batch, one after the second
        np.testing.assert_allclose(net.weight.data().asnumpy(), expected, rtol=1e-5, atol=1e-7)
        assert checks == ([1] if scaling else [])
        np.testing.assert_array_equal(net.weight.grad().asnumpy(), 0)  # zeroed for the next accumulation
        assert net.weight.grad_req == "add"

    before = net.weight.data().asnumpy().copy()
    for i, (x, y) in enumerate(batches[2:]):
        with autograd.record():
            loss = loss_fn(net(x), y)
        trainer.backward(loss)
        if i == 0:
            net.weight.grad()[0, 0] = np.inf  # overflow in the first batch; the second adds finite gradients
        trainer.step(2)
    assert checks == [1, 1] and trainer.num_update == 1  # the update was skipped
    np.testing.assert_array_equal(net.weight.data().asnumpy(), before)
    assert scaler._next_loss_scale == 2.0 ** 15  # halved (MXNet's scaler applies it from the next check on)
    np.testing.assert_array_equal(net.weight.grad().asnumpy(), 0)  # the overflowed sum is dropped
    Trainer(net.collect_params(), batch_size=2, steps_per_epoch=4)
    assert net.weight.grad_req == "write"  # a later Trainer without accumulation would otherwise keep adding


def test_only_an_epochs_last_batch_may_be_smaller_than_the_lr_assumes():
    """Issue #22 item 10: a mid-epoch batch other than the batch size is said once; an epoch's last, partial
    batch is not; an epoch of one partial update is an error."""
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    x, y = _batches(1)[0]

    def step(trainer, n):
        if n:
            with autograd.record():
                loss = loss_fn(net(x[:n]), y[:n])
            trainer.backward(loss)
        trainer.step(n)

    net = _tiny()
    trainer = Trainer(net.collect_params(), batch_size=2, steps_per_epoch=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for n in (2, 2, 1):  # 5 images: the last batch partial
            step(trainer, n)
        with pytest.warns(UserWarning, match=r"the update after batch 2 of epoch 2 averaged 1 images over all "
                                             r"workers, but the learning rate is scaled for 2 \(batch_size 2 x 1 "
                                             r"worker\(s\) x accumulate 1\)"):
            for n in (2, 1):
                step(trainer, n)
        step(trainer, 0)  # said once per Trainer
    trainer = Trainer(net.collect_params(), batch_size=2, steps_per_epoch=1)
    with pytest.raises(ValueError, match="an epoch holds 1 training images, fewer than the global batch of 2"):
        step(trainer, 1)

"""The papers' LARS and LAMB update rules in NumPy (float64), and a few Trainer steps on a toy net checked
against them: by test_optimizers.py on one worker and by scripts/optimizer_steps.py under horovodrun."""
import numpy as np

BN_BIAS = ("gamma", "beta", "bias")


def lars_steps(w, grads, lrs, *, momentum, wd, eta, adapt):
    """You et al. 2017 (arXiv:1708.03888), Algorithm 1, with the global lr ``lrs[t]`` outside the local one:
    ``local = eta |w| / (|g| + wd |w|)`` (1 when a norm is 0 or ``not adapt``), ``v = m v + lr local (g + wd w)``,
    ``w -= v``. ``grads`` are the gradients of the mean loss. The weights after each step."""
    w, v, out = w.astype(np.float64), np.zeros(w.shape), []
    for g, lr in zip(grads, lrs):
        g = g.astype(np.float64)
        w_norm, g_norm = np.linalg.norm(w), np.linalg.norm(g)
        local = eta * w_norm / (g_norm + wd * w_norm) if adapt and w_norm > 0 and g_norm > 0 else 1.0
        v = momentum * v + lr * local * (g + wd * w)
        w = w - v
        out.append(w)
    return out


def lamb_steps(w, grads, lrs, *, wd, adapt, beta1=0.9, beta2=0.999, eps=1e-6):
    """You et al. 2019 (arXiv:1904.00962), Algorithm 2 with bias correction and phi = identity:
    ``u = m_hat / (sqrt(v_hat) + eps) + wd w``, ``w -= lr |w| / |u| u`` (ratio 1 when a norm is 0 or
    ``not adapt``). The weights after each step."""
    w, m, v, out = w.astype(np.float64), np.zeros(w.shape), np.zeros(w.shape), []
    for t, (g, lr) in enumerate(zip(grads, lrs), 1):
        g = g.astype(np.float64)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        u = (m / (1 - beta1 ** t)) / (np.sqrt(v / (1 - beta2 ** t)) + eps) + wd * w
        w_norm, u_norm = np.linalg.norm(w), np.linalg.norm(u)
        w = w - lr * (w_norm / u_norm if adapt and w_norm > 0 and u_norm > 0 else 1.0) * u
        out.append(w)
    return out


def toy_net():
    """BatchNorm on the input, then Dense(4 -> 3), ReLU, Dense(3 -> 2): every parameter gets a real gradient
    (no bias sits before a BatchNorm), and biases and beta start non-zero so that their norms count."""
    import mxnet as mx
    from mxnet.gluon import nn

    net = nn.HybridSequential()
    net.add(nn.BatchNorm(in_channels=4), nn.Dense(3, in_units=4, activation="relu"), nn.Dense(2, in_units=3))
    net.initialize(mx.init.Normal(0.5))
    rng = np.random.RandomState(3)
    for name, param in net.collect_params().items():
        if name.endswith(("bias", "beta")):
            param.set_data(mx.nd.array(rng.normal(0, 0.3, param.shape)))
    return net


def check_steps(optimizer: str, *, trust_ratio_bn_bias: bool, steps: int = 3, batch: int = 6, seed: int = 0):
    """``steps`` Trainer steps of ``optimizer`` on :func:`toy_net` (this worker's shard of a fixed data set)
    against the reference rule applied to the global mean gradient. Returns ``{param name: max abs error}``, the
    same against the rule with the trust ratio choice flipped for every parameter, and the final weights. The lr warms up over the first two steps (0.5 x, then 1 x the peak)."""
    import mxnet as mx
    from mxnet import autograd, gluon

    from resnet_gluon import Trainer
    from resnet_gluon._core import dist

    rng = np.random.RandomState(seed)
    size, rank = dist.size(), dist.rank()
    x = rng.normal(0, 1, (steps, batch * size, 4)).astype(np.float32)
    y = rng.randint(0, 2, (steps, batch * size)).astype(np.float32)
    net, loss_fn = toy_net(), gluon.loss.SoftmaxCrossEntropyLoss()
    peak, wd = (2.0, 1e-3) if optimizer == "lars" else (0.05, 0.02)
    trainer = Trainer(net.collect_params(), batch_size=batch, steps_per_epoch=2, optimizer=optimizer, lr=peak, wd=wd,
                      warmup_epochs=1, no_wd_bn_bias=not trust_ratio_bn_bias, trust_ratio_bn_bias=trust_ratio_bn_bias,
                      lars_eta=0.01, momentum=0.9)
    params = {p.name: p for p in net.collect_params().values() if p.grad_req != "null"}
    start = {name: p.data().asnumpy() for name, p in params.items()}
    grads = {name: [] for name in params}
    for t in range(steps):
        shard = slice(rank * batch, (rank + 1) * batch)
        with autograd.record():
            loss = loss_fn(net(mx.nd.array(x[t, shard])), mx.nd.array(y[t, shard]))
        loss.backward()
        for name, p in params.items():  # the global mean gradient, before the step's own allreduce
            total = dist.allreduce_sum(p.grad().asnumpy().ravel().tolist(), name=f"g{t}.{name}")
            grads[name].append(np.reshape(total, p.shape) / (batch * size))
        trainer.step(batch)
    lrs = [peak * min(t / 2, 1.0) for t in range(1, steps + 1)]
    errors, flipped, final = {}, {}, {}
    for name, p in params.items():
        excluded = name.endswith(BN_BIAS) and not trust_ratio_bn_bias
        final[name] = p.data().asnumpy()
        for adapt, out in ((not excluded, errors), (excluded, flipped)):  # flipped: the other choice, to compare
            wd_p = 0.0 if excluded else wd
            if optimizer == "lars":
                expected = lars_steps(start[name], grads[name], lrs, momentum=0.9, wd=wd_p, eta=0.01, adapt=adapt)
            else:
                expected = lamb_steps(start[name], grads[name], lrs, wd=wd_p, adapt=adapt)
            out[name] = float(np.abs(final[name] - expected[-1]).max())
    return errors, flipped, final

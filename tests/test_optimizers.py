"""The recipe's optimizers (train/optimizers.py): LARS and LAMB against NumPy versions of the papers' update rules
(tests/optimizer_rules.py), on one and two workers; LAMB's MXNet paths and float16 master weights."""
import json

import mxnet as mx
import numpy as np
import pytest

from helpers import horovodrun
from optimizer_rules import check_steps


@pytest.mark.parametrize("optimizer", ["lars", "lamb"])
@pytest.mark.parametrize("trust_ratio_bn_bias", [False, True])
def test_lars_and_lamb_follow_the_papers_update_rules(optimizer, trust_ratio_bn_bias):
    errors, flipped, _ = check_steps(optimizer, trust_ratio_bn_bias=trust_ratio_bn_bias)
    assert max(errors.values()) < 1e-6, errors
    # the trust ratio matters for every parameter here, so the check above tells adapted from left-out ones
    assert min(flipped.values()) > 1e-3, flipped
    assert sorted(errors) == sorted(n for n in errors if n.endswith(("gamma", "beta", "weight", "bias")))
    assert any(n.endswith("gamma") for n in errors) and sum(n.endswith("bias") for n in errors) == 2


@pytest.mark.distributed
def test_lars_and_lamb_on_two_workers_follow_the_rules_on_the_global_gradient():
    out = horovodrun(2, "tests/scripts/optimizer_steps.py", timeout=300).stdout
    results = [json.loads(line.split("RESULT ", 1)[1]) for line in out.splitlines() if "RESULT " in line]
    assert sorted(r["rank"] for r in results) == [0, 1], out
    for r in results:
        for optimizer in ("lars", "lamb"):
            assert max(r[optimizer]["errors"].values()) < 1e-6, (r["rank"], optimizer, r[optimizer])
    for optimizer in ("lars", "lamb"):  # both workers hold the same weights
        assert results[0][optimizer]["final"] == results[1][optimizer]["final"]


def _lamb_steps(w, g, *, dtype, aggregate_num):
    from resnet_gluon.train.optimizers import LAMB

    opt = LAMB(learning_rate=0.1, wd=0.01, multi_precision=dtype == "float16")  # as Trainer(dtype='float16')
    opt.aggregate_num = aggregate_num
    opt.idx2name = {0: "bn_gamma", 1: "fc_weight"}  # left out of the trust ratio, adapted
    weights, grads = [mx.nd.array(a, dtype=dtype) for a in w], [mx.nd.array(a, dtype=dtype) for a in g]
    states = [opt.create_state_multi_precision(i, weights[i]) for i in range(2)]
    for _ in range(3):
        if aggregate_num > 1:
            opt.update_multi_precision([0, 1], weights, grads, states)
        else:  # the updater's calls without aggregation
            for i in range(2):
                opt.update_multi_precision(i, weights[i], grads[i], states[i])
    return np.stack([x.asnumpy().astype(np.float64) for x in weights])


@pytest.mark.parametrize("aggregate_num", [45, 1])  # MXNet's default, and MXNET_OPTIMIZER_AGGREGATION_SIZE=1
def test_lamb_paths_and_float16_master_weights_agree(aggregate_num):
    rng = np.random.RandomState(0)
    w, g = rng.normal(0, 1, (2, 5)), rng.normal(0, 1, (2, 5))
    reference = _lamb_steps(w, g, dtype="float32", aggregate_num=45)  # adapted: MXNet's multi_lamb_update
    assert np.abs(reference - w).min() > 0.01  # both parameters moved
    np.testing.assert_allclose(_lamb_steps(w, g, dtype="float32", aggregate_num=aggregate_num), reference, atol=1e-6)
    np.testing.assert_allclose(_lamb_steps(w, g, dtype="float16", aggregate_num=aggregate_num), reference, atol=3e-3)

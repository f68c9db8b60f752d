"""Which records each worker reads each epoch (data/sharding.py); the pipelines that read them: test_pipelines.py."""
import numpy as np

from resnet_gluon.data import sharding


def test_epoch_order_is_a_pure_function_of_seed_and_epoch():
    """Resume: epoch e of a new pipeline object reads exactly what epoch e of a running one reads."""
    a = sharding.epoch_order(1000, seed=7, epoch=3)
    assert np.array_equal(a, sharding.epoch_order(1000, seed=7, epoch=3))
    assert not np.array_equal(a, sharding.epoch_order(1000, seed=7, epoch=4))
    assert not np.array_equal(a, sharding.epoch_order(1000, seed=8, epoch=3))
    parts = [sharding.shard_positions(10, k, 4, sharding.epoch_order(10, seed=0, epoch=0)) for k in range(4)]
    assert [len(p) for p in parts] == [3, 3, 2, 2] and sorted(np.concatenate(parts)) == list(range(10))

"""fit() a small BatchNorm-free net with a Checkpoint, a Report and the progress bar; run plainly or as one worker
of the simulated hosts of tests/multihost.py (in its host's own folder).

usage: multihost_train.py OUT_DIR PER_WORKER_BATCH N_IMAGES EPOCHS
Checkpoints go to the RELATIVE prefix ckpt/model and the report to ckpt/report.json, so each simulated host
has its own. Prints 'SLOT {json}' first (the worker's place and what the library derives from it: threads, data
shard), then trains, saves OUT_DIR/params-rank{r}.params and prints 'WORKER {json}': what it held at the start
of training (after a resume), per epoch the images it read and counted, and the files it wrote (every file the
library writes is renamed into place with os.replace).
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from resnet_gluon import Callback, Checkpoint, Report, fit
from resnet_gluon._core import dist, runtime
from resnet_gluon.data import sharding  # first: threads before mxnet

import mxnet as mx

from helpers import ArrayBatches, quadrant_problem, tiny_net

out_dir, batch, n, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
written = []
_replace = os.replace


def _recording_replace(src, dst, *args, **kwargs):
    written.append(os.path.relpath(os.fspath(dst)))
    return _replace(src, dst, *args, **kwargs)


os.replace = _recording_replace


def checksum(net):
    return float(sum(p.data().astype("float64").abs().sum().asscalar() for p in net.collect_params().values()))


class Probe(Callback):
    """What this worker holds when training (re)starts, and per epoch: images read, images counted, lr."""

    def __init__(self, data):
        self.data, self.info = data, dict(epochs=[])

    def on_train_begin(self, logs):
        trainer = self.state.trainer
        self.info.update(initial_epoch=self.state.initial_epoch, num_update=trainer.num_update,
                         steps_taken=trainer._steps_taken, checksum=checksum(self.state.net))

    def on_epoch_begin(self, epoch, logs):
        self.data.reads.clear()

    def on_epoch_end(self, epoch, logs):
        self.info["epochs"].append(dict(epoch=epoch, reads=list(self.data.reads), num_images=logs["num_images"],
                                        lr=logs["lr"], num_update=self.state.trainer.num_update))


dist.init()
hvd = dist.horovod() if dist.size() > 1 else None
print("SLOT " + json.dumps(dict(
    rank=dist.rank(), size=dist.size(), local_rank=dist.local_rank(), local_size=dist.local_size(),
    cross_rank=hvd.cross_rank() if hvd else 0, host=os.environ.get("HOROVOD_HOSTNAME"),
    omp_num_threads=os.environ.get("OMP_NUM_THREADS"), cores=len(os.sched_getaffinity(0)),
    data_threads=runtime.default_data_threads(), data_shard=sharding.resolve_shard(None, None))), flush=True)
mx.random.seed(42)
net = tiny_net()
x, y = quadrant_problem(n, size=8)
train = ArrayBatches(x, y, batch, dist.rank(), dist.size())
probe = Probe(train)
ckpt = Checkpoint("ckpt/model")
fit(net, train, epochs=epochs, lr=0.05, warmup_epochs=1.5, dtype="float32", read_every=1,
    callbacks=[ckpt, Report("ckpt/report.json", plot=False), probe])
net.save_parameters(os.path.join(out_dir, f"params-rank{dist.rank()}.params"))
print("WORKER " + json.dumps(dict(resumed_from=ckpt.resumed_from, written=written, **probe.info)), flush=True)

"""Train resnet18_v1_5 on a RecordIO folder (DALI, random augmentation) with checkpoints; used by the stop tests.

usage: train_stop.py DATA_ROOT PREFIX EPOCHS [--delay SECONDS] [--max-run-time DURATION]

Prints ``BATCH <epoch> <batch> <pid>`` per computed batch (rank 0 and 1) and ``STOPPED <epoch> <step> <reason>`` when
fit stops on request; exits as fit does (75 after a stop).
"""
import argparse
import os
import time

import mxnet as mx

from resnet_gluon import Callback, Checkpoint, Preprocessing, Report, fit, resnet18_v1_5
from resnet_gluon._core import dist
from resnet_gluon.data import pipelines
from resnet_gluon.train.stopping import TrainingStopped

parser = argparse.ArgumentParser()
parser.add_argument("root")
parser.add_argument("prefix")
parser.add_argument("epochs", type=int)
parser.add_argument("--delay", type=float, default=0.0)
parser.add_argument("--max-run-time")
args = parser.parse_args()


class Slow(Callback):
    def on_batch_end(self, batch, logs):
        print(f"BATCH {self.state.epoch} {batch} {os.getpid()} rank{dist.rank()}", flush=True)
        time.sleep(args.delay)


mx.random.seed(1)
prep = Preprocessing(image_size=32, resize=36, area=(0.3, 1.0))
train, val = pipelines.imagenet(args.root, batch_size=4, preprocessing=prep, seed=5, num_threads=1)
net = resnet18_v1_5(classes=3)
try:
    fit(net, train, val, epochs=args.epochs, lr=0.05, warmup_epochs=1, progress=False, dtype="float32",
        max_run_time=args.max_run_time, callbacks=[Checkpoint(args.prefix), Report(args.prefix + "-report.json"),
                                                   Slow()])
except TrainingStopped as stop:
    print(f"STOPPED {stop.epoch} {stop.step} {stop.reason}", flush=True)
    raise
print("DONE", flush=True)

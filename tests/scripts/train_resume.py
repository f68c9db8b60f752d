"""Train resnet18_v1_5 on a RecordIO folder with checkpoints and a report (used by the resume test).

usage: train_resume.py DATA_ROOT PREFIX EPOCHS [SLEEP_PER_BATCH]
"""
import os
import sys
import time

import mxnet as mx

from resnet_gluon import Callback, Checkpoint, Report, Preprocessing, fit, resnet18_v1_5
from resnet_gluon.data import pipelines

root, prefix, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
delay = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0


class Slow(Callback):
    """Slows batches down so the test can kill the run in the middle of an epoch."""

    def on_batch_end(self, batch, logs):
        print(f"epoch {self.state.epoch} batch {batch}", flush=True)
        time.sleep(delay)


mx.random.seed(1)
prep = Preprocessing(image_size=32, resize=36, area=(0.3, 1.0))
train, val = pipelines.imagenet(root, batch_size=8, preprocessing=prep, seed=5, num_threads=1)
net = resnet18_v1_5(classes=3)
fit(net, train, val, epochs=epochs, lr=0.05, warmup_epochs=1, progress=False,
    callbacks=[Checkpoint(prefix), Report(prefix + "-report.json"), Slow()], dtype="float32")
print("DONE", flush=True)

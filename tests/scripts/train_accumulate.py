"""Train with gradient accumulation through fit() or the README's own loop; run plainly or under horovodrun.

usage: train_accumulate.py OUT_DIR PER_WORKER_BATCH N_IMAGES ACCUMULATE EPOCHS {bn|plain} {fit|loop}
'bn' is a small ResNet with BatchNorm (16 px images), 'plain' the BatchNorm-free tiny_net (8 px). Saves
OUT_DIR/params-rank{r}.params and prints on rank 0 'RESULT {json}': the updates, step() calls, gradient
allreduce rounds (Trainer._allreduce_grads calls) and the gradient tensors Horovod allreduced (allreduce_ calls),
the parameters with gradients, fit's per-epoch loss and images, and the last lr.
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import mxnet as mx

from helpers import ArrayBatches, quadrant_problem, readme_loop, tiny_net
from resnet_gluon import Callback, Trainer, fit
from resnet_gluon._core import dist
from resnet_gluon.models.blocks import BasicBlock, ResNet

out_dir, batch, n, accumulate, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), \
    int(sys.argv[5])
kind, mode = sys.argv[6], sys.argv[7]
dist.init()
counts = dict(rounds=0, tensors=0, steps=0)
_allreduce_grads, _step = Trainer._allreduce_grads, Trainer.step


def counting_allreduce_grads(self):
    counts["rounds"] += 1
    return _allreduce_grads(self)


def counting_step(self, *args, **kwargs):
    counts["steps"] += 1
    return _step(self, *args, **kwargs)


Trainer._allreduce_grads, Trainer.step = counting_allreduce_grads, counting_step
if dist.size() > 1:
    import horovod.mxnet as hvd_mx

    _allreduce_ = hvd_mx.allreduce_

    def counting_allreduce_(*args, **kwargs):  # DistributedTrainer._allreduce_grads looks it up in its module
        counts["tensors"] += 1
        return _allreduce_(*args, **kwargs)

    hvd_mx.allreduce_ = counting_allreduce_

mx.random.seed(42)
if kind == "bn":
    net = ResNet(BasicBlock, (1,), classes=4, stem_channels=8)
    net.initialize()
    x, y = quadrant_problem(n, size=16)
else:
    net = tiny_net()
    x, y = quadrant_problem(n, size=8)
train = ArrayBatches(x, y, batch, dist.rank(), dist.size())
# lr_per_256, not lr: the peak lr must follow the global batch batch x workers x accumulate
options = dict(lr_per_256=1.0, warmup_epochs=1, epochs=epochs, accumulate=accumulate)
result = {}
if mode == "fit":
    class Updates(Callback):
        def on_train_end(self, logs):
            result["updates"] = self.state.trainer.num_update

    history = fit(net, train, dtype="float32", progress=False, callbacks=[Updates()], **options)
    result.update(loss=history.history["loss"], num_images=history.history["num_images"],
                  lr=history.history["lr"][-1])
else:  # the README's own loop, unchanged but for accumulate=
    net.hybridize()
    trainer = Trainer(net.collect_params(), batch_size=batch, steps_per_epoch=len(train), **options)
    readme_loop(net, train, trainer, epochs)
    result.update(lr=trainer.learning_rate, updates=trainer.num_update)
net.save_parameters(os.path.join(out_dir, f"params-rank{dist.rank()}.params"))
result.update(counts, params_with_grad=sum(p.grad_req != "null" for p in net.collect_params().values()))
if dist.rank() == 0:
    print("RESULT " + json.dumps(result))

"""Callbacks: the TensorBoard event files, read back."""
import glob
import struct

import pytest

from helpers import ArrayBatches, quadrant_problem
from resnet_gluon import TensorBoard, fit
from resnet_gluon.models.blocks import BasicBlock, ResNet


def _read_events(folder):
    """(tag, step, value) of every scalar in the TFRecord event files of ``folder``."""
    from tensorboardX.proto import event_pb2

    scalars = []
    for path in glob.glob(f"{folder}/events.out.tfevents.*"):
        with open(path, "rb") as f:
            while True:
                head = f.read(12)  # uint64 length + uint32 masked CRC of the length
                if len(head) < 12:
                    break
                (length,) = struct.unpack("<Q", head[:8])
                event = event_pb2.Event.FromString(f.read(length))
                f.read(4)  # masked CRC of the data
                scalars += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
    return scalars


def test_tensorboard_writes_step_and_epoch_scalars(tmp_path):
    x, y = quadrant_problem(64, size=16)
    net = ResNet(BasicBlock, (1,), classes=4, stem_channels=8)
    history = fit(net, ArrayBatches(x, y, 16), ArrayBatches(x, y, 16), epochs=2, dtype="float32", lr=0.1,
                  warmup_epochs=1, progress=False, read_every=1, callbacks=[TensorBoard(str(tmp_path / "tb"))])
    scalars = _read_events(tmp_path / "tb")
    tags = {t for t, _, _ in scalars}
    assert {"step/loss", "step/top1", "step/lr", "step/images_per_sec"} <= tags
    assert {"epoch/loss", "epoch/top1", "epoch/val_top1", "epoch/total_ips", "epoch/lr"} <= tags
    lr_steps = sorted((s, v) for t, s, v in scalars if t == "step/lr")
    assert [s for s, _ in lr_steps] == list(range(1, 9))  # 4 steps x 2 epochs
    assert lr_steps[-1][1] == pytest.approx(0.1)
    assert lr_steps[0][1] < lr_steps[2][1]  # warmup rises
    val_top1 = sorted((s, v) for t, s, v in scalars if t == "epoch/val_top1")
    assert [s for s, _ in val_top1] == [1, 2]
    assert [v for _, v in val_top1] == pytest.approx(history.history["val_top1"], abs=1e-6)

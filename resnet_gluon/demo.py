"""The embedded demo: ResNet-50 v1.5 on Fashion-MNIST, end to end, as ``resnet-gluon demo`` / ``make demo`` run it.

It prepares the embedded Fashion-MNIST as RecordIO (rank 0, the others wait), trains ``resnet50_v1_5`` through
the DALI pipeline, the Horovod Trainer and AMP where the CPU supports bfloat16, validates on the 10,000 test
images after every epoch, and leaves in ``output``: ``data/`` (the record files), the checkpoints ``model-*``,
``report.json`` and a PNG of the curves. Running it again resumes from the newest checkpoint.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Optional

from .data import fashion_mnist, pipelines, recordio
from .data.preprocessing import Preprocessing
from .train.callbacks import Checkpoint, Report
from ._core.dist import barrier, is_rank_zero
from .models.registry import resnet50_v1_5
from .train.fit import History, fit

__all__ = ["run_demo", "DemoResult"]


@dataclasses.dataclass(frozen=True)
class DemoResult:
    """What :func:`run_demo` did: ``fit``'s history (no epochs when the run was already complete), the output
    folder and the seconds training took; ``str()`` gives the one-line summary ``resnet-gluon demo`` prints."""

    history: History
    output: str
    seconds: float

    def __str__(self) -> str:
        if not self.history.epochs:
            return f"demo: already complete; see {self.output}/report.json"
        last = self.history.summary()
        return (f"demo: {last['epochs']} epochs, test top-1 {last['val_top1']:.4f}, top-5 {last['val_top5']:.4f}, "
                f"{self.seconds:.0f} s; files in {self.output}/")


def run_demo(output: str = os.path.join("runs", "demo"), *, epochs: int = 2, train_images: Optional[int] = 36000,
             image_size: int = 28, batch_size: int = 64, lr: Optional[float] = None, min_area: float = 0.75,
             dtype: str = "auto", num_threads: Optional[int] = None,
             test_images: Optional[int] = None) -> DemoResult:
    """Run the demo into the folder ``output``; returns :func:`~resnet_gluon.train.fit.fit`'s history and timing.

    Parameters
    ----------
    output : str
        Folder of the record files, checkpoints, report and curves.
    epochs : int
        Training epochs (a resumed run trains the missing ones only).
    train_images : int, optional
        Training images used, the first of Fashion-MNIST's 60,000 (None: all).
    image_size : int
        Image size in pixels (28 is Fashion-MNIST's own).
    batch_size : int
        Images per worker per step.
    lr : float, optional
        Peak learning rate of the cosine schedule (0.2 epochs of warm-up); default the reference's 0.1 per 256
        images of global batch.
    min_area : float
        Smallest area of the random-resized crop (Fashion-MNIST items fill the frame, hence more than the
        reference's 0.08).
    dtype : str
        Training precision (see :data:`resnet_gluon._core.amp.DTYPE_TABLE`); 'auto' picks bfloat16 where supported.
    num_threads : int, optional
        DALI threads; default :func:`~resnet_gluon._core.runtime.default_data_threads`.
    test_images : int, optional
        Test images used, the first of Fashion-MNIST's 10,000 (None: all), e.g. for a quick check of the setup.

    Raises
    ------
    FileNotFoundError
        Without the embedded Fashion-MNIST files (Debian package ``dataset-fashion-mnist``).
    """
    data_dir = os.path.join(output, "data")
    if is_rank_zero():
        fashion_mnist.fashion_mnist_to_recordio(data_dir, image_size=image_size, train_limit=train_images,
                                                val_limit=test_images)
    barrier("demo_data_ready")  # the other ranks wait until rank 0 has written the data
    preprocessing = Preprocessing.for_size(image_size, area=(min_area, 1.0))
    train, val = pipelines.imagenet(data_dir, batch_size=batch_size, preprocessing=preprocessing, seed=0,
                                    num_threads=num_threads)
    net = resnet50_v1_5(classes=10)
    callbacks = [Checkpoint(os.path.join(output, "model"), class_names=recordio.FASHION_MNIST_CLASSES,
                            preprocessing=preprocessing),
                 Report(os.path.join(output, "report.json"), cmd=sys.argv)]
    start = time.time()
    history = fit(net, train, val, epochs=epochs, dtype=dtype, lr=lr, schedule="cosine", warmup_epochs=0.2,
                  callbacks=callbacks)
    return DemoResult(history, output, time.time() - start)
